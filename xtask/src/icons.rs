//! `cargo xtask icons`: regenerate the dashboard's brand icons from the `simple-icons` npm package.
//!
//! simple-icons is CC0 (public domain). We take the SVG path and brand colour of a curated set of
//! self-hosted apps and write them as data into `assets/js/icon-data.js`, plus a licence note in
//! `assets/ICONS.md`. The dashboard never fetches an icon at run time.
//!
//! The package version is pinned so the output is reproducible; bump [`VERSION`] and rerun to
//! refresh. Only icons that simple-icons marks as CC0 (no per-icon `license`, or `CC0-1.0`) are
//! taken: the run fails, naming the icon, if a curated one carries another licence or is missing.
//! Apps without a usable icon show coloured initials in the UI; we never draw logos ourselves.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The simple-icons release the data is taken from.
pub const VERSION: &str = "16.37.0";

/// The whole page (HTML + CSS + JS + icons) must stay under 300 KB; the icons get this share.
/// simple-icons has many more apps than we take (Consul, Sentry, Matomo, Odoo, …): each costs
/// 0.3–5 KB, so add one only when people are likely to run it.
const MAX_DATA_BYTES: usize = 120_000;

/// Files written, relative to the repository root.
const DATA_FILE: &str = "assets/js/icon-data.js";
const NOTE_FILE: &str = "assets/ICONS.md";

/// Curated icons: simple-icons slug, then the lowercase image names that map to it.
///
/// How `assets/js/icons.js` matches an image such as `ghcr.io/immich-app/immich-server:v1`: it
/// drops the registry, tag and digest, then tries, in order, the whole repository path
/// (`immich-app/immich-server`), its last segment (`immich-server`), that segment with trailing
/// `-`/`_`/`.` parts removed one at a time (`immich`), and then each owner segment right to left
/// the same way. The first name found here wins.
const CURATED: &[(&str, &[&str])] = &[
    // Web servers, proxies, tunnels
    ("nginx", &["nginx", "nginx-unprivileged"]),
    ("nginxproxymanager", &["nginx-proxy-manager", "jc21"]),
    ("caddy", &["caddy"]),
    ("traefikproxy", &["traefik"]),
    ("haproxy", &["haproxy"]),
    ("cloudflare", &["cloudflared"]),
    ("wireguard", &["wireguard", "wg-easy"]),
    ("openvpn", &["openvpn", "openvpn-as"]),
    ("tailscale", &["tailscale"]),
    ("zerotier", &["zerotier", "zerotier-one"]),
    // Databases, queues, search
    ("postgresql", &["postgres", "postgresql"]),
    ("mariadb", &["mariadb"]),
    ("mysql", &["mysql", "mysql-server"]),
    ("mongodb", &["mongo", "mongodb", "mongodb-community-server"]),
    ("redis", &["redis", "redis-stack", "redis-stack-server"]),
    ("influxdb", &["influxdb"]),
    ("clickhouse", &["clickhouse", "clickhouse-server"]),
    ("rabbitmq", &["rabbitmq"]),
    ("elasticsearch", &["elasticsearch"]),
    ("kibana", &["kibana"]),
    ("logstash", &["logstash"]),
    ("meilisearch", &["meilisearch", "getmeili"]),
    ("minio", &["minio"]),
    ("phpmyadmin", &["phpmyadmin"]),
    // Monitoring and operations
    ("grafana", &["grafana", "grafana-oss", "grafana-enterprise"]),
    (
        "prometheus",
        &["prometheus", "prom", "alertmanager", "node-exporter", "pushgateway", "blackbox-exporter"],
    ),
    ("victoriametrics", &["victoria-metrics", "victoriametrics"]),
    ("netdata", &["netdata"]),
    ("checkmk", &["check-mk-raw", "checkmk"]),
    ("uptimekuma", &["uptime-kuma"]),
    ("portainer", &["portainer", "portainer-ce", "portainer-ee"]),
    ("watchtower", &["watchtower", "containrrr"]),
    ("docker", &["docker", "dind", "registry"]),
    ("kubernetes", &["kubernetes", "kube"]),
    ("vault", &["vault"]),
    ("nomad", &["nomad"]),
    ("homarr", &["homarr"]),
    ("homepage", &["homepage", "gethomepage"]),
    ("glance", &["glance", "glanceapp"]),
    // DNS, network, security
    ("pihole", &["pihole", "pi-hole"]),
    ("adguard", &["adguardhome", "adguard"]),
    ("authentik", &["authentik", "goauthentik"]),
    ("vaultwarden", &["vaultwarden"]),
    ("bitwarden", &["bitwarden"]),
    ("ubiquiti", &["unifi", "unifi-network-application", "unifi-controller"]),
    // Home automation
    ("homeassistant", &["home-assistant", "homeassistant", "hass"]),
    ("esphome", &["esphome"]),
    ("homebridge", &["homebridge"]),
    ("nodered", &["node-red", "nodered"]),
    ("zigbee2mqtt", &["zigbee2mqtt", "koenkk"]),
    ("eclipsemosquitto", &["eclipse-mosquitto", "mosquitto"]),
    ("iobroker", &["iobroker"]),
    ("openhab", &["openhab"]),
    ("frigate", &["frigate"]),
    ("octoprint", &["octoprint"]),
    // Media
    ("jellyfin", &["jellyfin"]),
    ("plex", &["plex", "pms-docker", "plexinc"]),
    ("emby", &["emby", "embyserver"]),
    ("sonarr", &["sonarr"]),
    ("radarr", &["radarr"]),
    ("qbittorrent", &["qbittorrent", "qbittorrent-nox"]),
    ("transmission", &["transmission"]),
    ("audiobookshelf", &["audiobookshelf", "advplyr"]),
    ("calibreweb", &["calibre-web"]),
    ("immich", &["immich"]),
    // Files, documents, sync, backup
    ("nextcloud", &["nextcloud"]),
    ("seafile", &["seafile", "seafileltd"]),
    ("syncthing", &["syncthing"]),
    ("onlyoffice", &["onlyoffice"]),
    ("collaboraonline", &["collabora"]),
    ("paperlessngx", &["paperless-ngx", "paperless", "paperlessngx"]),
    ("duplicati", &["duplicati"]),
    ("borgbackup", &["borgbackup", "borg"]),
    // Code, collaboration, notes
    ("gitea", &["gitea"]),
    ("gitlab", &["gitlab", "gitlab-ce", "gitlab-ee", "gitlab-runner"]),
    ("drone", &["drone", "drone-runner-docker"]),
    ("n8n", &["n8n", "n8nio"]),
    ("mattermost", &["mattermost", "mattermost-team-edition", "mattermost-enterprise-edition"]),
    ("matrix", &["synapse", "matrixdotorg", "dendrite"]),
    ("element", &["element-web", "element", "vectorim"]),
    ("mastodon", &["mastodon", "tootsuite"]),
    ("bookstack", &["bookstack"]),
    ("outline", &["outline", "outlinewiki"]),
    ("joplin", &["joplin"]),
    ("freshrss", &["freshrss"]),
    ("searxng", &["searxng"]),
    ("ntfy", &["ntfy", "binwiederhier"]),
    // Web apps
    ("wordpress", &["wordpress"]),
    ("ghost", &["ghost"]),
    ("drupal", &["drupal"]),
    ("supabase", &["supabase"]),
    ("mealie", &["mealie", "mealie-recipes"]),
    ("actualbudget", &["actual-server", "actualbudget"]),
    // Base images and runtimes
    ("alpinelinux", &["alpine"]),
    ("ubuntu", &["ubuntu"]),
    ("python", &["python"]),
    ("nodedotjs", &["node"]),
];

/// Wanted apps with no usable icon in this simple-icons release (absent, or under a licence other
/// than CC0). Listed in ICONS.md so nobody goes looking again; the UI shows their initials.
const NOT_AVAILABLE: &[(&str, &str)] = &[
    ("Lidarr, Prowlarr, Bazarr, Readarr, Overseerr, Jellyseerr, Tautulli", "not in simple-icons"),
    ("SABnzbd, NZBGet, Navidrome, PhotoPrism, Dozzle, Gotify, File Browser", "not in simple-icons"),
    ("code-server, Memcached, Zabbix, Loki, Telegraf, Headscale, Restic", "not in simple-icons"),
    ("Forgejo, Jenkins, Debian, PHP, Ruby, Rust, Redmine", "CC BY-SA in simple-icons"),
    ("Authelia, Apache httpd, Tomcat, Kafka, Cassandra, Guacamole", "Apache-2.0 in simple-icons"),
    ("Keycloak, Harbor", "trademark policy in simple-icons"),
    ("Deluge, HedgeDoc, Umami, Let's Encrypt, OpenJDK", "non-CC0 licence in simple-icons"),
];

/// Regenerate `assets/js/icon-data.js` and `assets/ICONS.md` under `root` (the repository root).
///
/// Needs `npm` (to fetch the package from the npm registry) and `tar` on the PATH.
pub fn run(root: &Path) -> Result<(), String> {
    let work = TempDir::new()?;
    let package = fetch_package(&work.0)?;
    let (data, note) = generate(&package)?;
    if data.len() > MAX_DATA_BYTES {
        return Err(format!(
            "{DATA_FILE} would be {} bytes, over its {MAX_DATA_BYTES}-byte share of the page weight",
            data.len()
        ));
    }
    write(&root.join(DATA_FILE), &data)?;
    write(&root.join(NOTE_FILE), &note)?;
    println!("wrote {DATA_FILE} ({} icons, {} bytes) and {NOTE_FILE}", CURATED.len(), data.len());
    Ok(())
}

/// `npm pack` the pinned release into `dir` and unpack it; returns the `package/` folder.
fn fetch_package(dir: &Path) -> Result<PathBuf, String> {
    let spec = format!("simple-icons@{VERSION}");
    let out = Command::new("npm")
        .args(["pack", &spec, "--silent"])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run npm (is Node.js installed?): {e}"))?;
    if !out.status.success() {
        return Err(format!("npm pack {spec} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let tarball = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .rfind(|l| l.ends_with(".tgz"))
        .map(str::to_owned)
        .ok_or_else(|| format!("npm pack {spec} printed no tarball name"))?;
    let status = Command::new("tar")
        .args(["-xzf", &tarball])
        .current_dir(dir)
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !status.success() {
        return Err(format!("tar could not unpack {tarball}"));
    }
    Ok(dir.join("package"))
}

/// Build the contents of the data file and the licence note from an unpacked package.
fn generate(package: &Path) -> Result<(String, String), String> {
    let json_path = package.join("data/simple-icons.json");
    let raw = fs::read_to_string(&json_path).map_err(|e| format!("{}: {e}", json_path.display()))?;
    let all: serde_json::Value =
        serde_json::from_str(&raw).map_err(|e| format!("{}: {e}", json_path.display()))?;
    let all = all.as_array().ok_or("simple-icons.json is not an array")?;

    let mut icons: Vec<(&str, String, String, String)> = Vec::new(); // slug, title, hex, path
    for (slug, _) in CURATED {
        let entry = all
            .iter()
            .find(|e| e["slug"] == *slug)
            .ok_or_else(|| format!("icon `{slug}` is not in simple-icons {VERSION}"))?;
        if let Some(licence) = entry["license"]["type"].as_str().filter(|t| *t != "CC0-1.0") {
            return Err(format!("icon `{slug}` is {licence} in simple-icons {VERSION}, not CC0"));
        }
        let title = entry["title"].as_str().ok_or_else(|| format!("`{slug}` has no title"))?;
        let hex = entry["hex"].as_str().ok_or_else(|| format!("`{slug}` has no hex"))?;
        let svg_path = package.join("icons").join(format!("{slug}.svg"));
        let svg = fs::read_to_string(&svg_path).map_err(|e| format!("{}: {e}", svg_path.display()))?;
        let path = svg_path_data(&svg).ok_or_else(|| format!("no path data in {}", svg_path.display()))?;
        icons.push((slug, title.to_owned(), hex.to_uppercase(), path.to_owned()));
    }
    icons.sort_by(|a, b| a.0.cmp(b.0));

    let mut aliases: Vec<(&str, &str)> = Vec::new();
    for (slug, names) in CURATED {
        for name in *names {
            if let Some((_, other)) = aliases.iter().find(|(n, _)| n == name) {
                return Err(format!("image name `{name}` maps to both `{other}` and `{slug}`"));
            }
            aliases.push((name, slug));
        }
    }
    aliases.sort();

    let q = |s: &str| serde_json::to_string(s).expect("a string always serializes");
    let mut js = String::new();
    let _ = writeln!(
        js,
        "// Brand icons from the simple-icons npm package, version {VERSION} (CC0 1.0, public domain).\n\
         // Generated by `cargo xtask icons` (xtask/src/icons.rs): do not edit by hand.\n\
         // Brand names and logos are trademarks of their owners; see assets/ICONS.md.\n\
         \n\
         export const SOURCE = {{ package: \"simple-icons\", version: {}, license: \"CC0-1.0\" }};\n\
         \n\
         /** slug -> {{ title, hex (brand colour without #), path (SVG path data, 24x24 viewBox) }} */\n\
         export const ICONS = {{",
        q(VERSION)
    );
    for (slug, title, hex, path) in &icons {
        let _ = writeln!(js, "  {}: {{ title: {}, hex: {}, path: {} }},", q(slug), q(title), q(hex), q(path));
    }
    js.push_str(
        "};\n\n/** lowercase image name (repository path, segment or prefix) -> slug; see icons.js */\nexport const ALIASES = {\n",
    );
    for (name, slug) in &aliases {
        let _ = writeln!(js, "  {}: {},", q(name), q(slug));
    }
    js.push_str("};\n");

    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Brand icons\n\n\
         The service icons on the dashboard cards come from [simple-icons](https://simpleicons.org)\n\
         (npm package `simple-icons`, version {VERSION}), released under\n\
         [CC0 1.0 Universal](https://creativecommons.org/publicdomain/zero/1.0/) — public domain.\n\
         Only icons that simple-icons marks as CC0 are used. They are stored as data (SVG path and\n\
         brand colour) in `assets/js/icon-data.js`; nothing is fetched at run time.\n\n\
         Brand names and logos remain trademarks of their owners; showing them to identify the\n\
         software an image contains implies no endorsement.\n\n\
         Regenerate with `cargo xtask icons` (code in `xtask/src/icons.rs`: the pinned version and\n\
         the curated list of image names live there). Images that match no icon get coloured initials.\n\
         simple-icons has many more apps than are taken here; the list is kept short so the page stays\n\
         light (each icon is 0.1–5 KB of path data).\n\n\
         ## Included ({} icons)\n",
        icons.len()
    );
    for (slug, title, hex, _) in &icons {
        let names: Vec<String> = CURATED
            .iter()
            .find(|(s, _)| s == slug)
            .map(|(_, n)| n.iter().map(|n| format!("`{n}`")).collect())
            .unwrap_or_default();
        let _ = writeln!(md, "- {title} (`{slug}`, #{hex}) — {}", names.join(", "));
    }
    md.push_str("\n## Wanted but not available (shown as initials)\n\n");
    for (apps, why) in NOT_AVAILABLE {
        let _ = writeln!(md, "- {apps}: {why}");
    }
    Ok((js, md))
}

/// The `d` attribute of the single `<path>` in a simple-icons SVG.
fn svg_path_data(svg: &str) -> Option<&str> {
    let start = svg.find("<path")?;
    let rest = &svg[start..];
    let d = rest.find(" d=\"")? + 4;
    let len = rest[d..].find('"')?;
    Some(&rest[d..d + len])
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()))
}

/// A scratch folder removed when dropped (std has none; we need no crate for it).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("diun-icons-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_data_is_read_from_the_svg() {
        let svg = r#"<svg role="img" viewBox="0 0 24 24" xmlns="http://www.w3.org/2000/svg"><title>X</title><path d="M1 2h3z"/></svg>"#;
        assert_eq!(svg_path_data(svg), Some("M1 2h3z"));
    }

    #[test]
    fn every_image_name_is_lowercase_and_maps_to_one_icon() {
        let mut seen = std::collections::HashSet::new();
        for (_, names) in CURATED {
            for name in *names {
                assert_eq!(*name, name.to_lowercase());
                assert!(seen.insert(*name), "{name} listed twice");
            }
        }
        assert!(CURATED.len() >= 80, "the UI promises at least 80 recognised apps");
    }
}
