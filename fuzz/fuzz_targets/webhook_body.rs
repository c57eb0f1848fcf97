//! `POST /webhook` bodies: any bytes are parsed without a panic, and an accepted event is one
//! the stores can keep and give back unchanged.
#![no_main]

use diun_dashboard::model::{DiunEvent, check_image};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(event) = DiunEvent::from_json(body) else { return };
    assert!(check_image(&event.image).is_ok(), "accepted an image no store can key on: {:?}", event.image);

    // What the API answers is accepted again, as the same event.
    let answered = serde_json::to_vec(&event).expect("an event serializes");
    let again = DiunEvent::from_json(&answered).expect("an accepted event, as answered, is accepted again");
    assert_eq!(again, event);

    // The JSON columns both stores write restore the same event.
    let mut restored = DiunEvent { metadata: None, extra: serde_json::Map::new(), ..event.clone() };
    restored
        .set_json_columns(event.metadata_json().as_deref(), event.extra_json().as_deref())
        .expect("stored JSON columns read back");
    assert_eq!(restored, event);
});
