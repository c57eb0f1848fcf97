// Applies the remembered theme before first paint (a classic script in <head>, so the page never
// flashes light for someone who chose dark). theme.js owns the toggle; both use this key.
(function () {
  try {
    var mode = JSON.parse(localStorage.getItem("diun-dashboard:theme"));
    if (mode === "light" || mode === "dark") document.documentElement.setAttribute("data-theme", mode);
  } catch (e) {
    /* storage blocked: follow the system theme */
  }
})();
