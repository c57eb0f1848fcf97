//! The image in `PATCH /api/updates/{image}`: any path decodes without a panic, to an image the
//! stores accept or to an error message, and encoding a decoded image gives it back.
#![no_main]

use diun_dashboard::model::{check_image, decode_image_path};
use libfuzzer_sys::fuzz_target;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

fuzz_target!(|raw: &[u8]| {
    // warp hands the handler the path as text.
    let Ok(raw) = std::str::from_utf8(raw) else { return };
    match decode_image_path(raw) {
        Ok(image) => {
            assert!(check_image(&image).is_ok(), "decoded to an image no store accepts: {image:?}");
            let encoded = utf8_percent_encode(&image, NON_ALPHANUMERIC).to_string();
            assert_eq!(decode_image_path(&encoded).as_deref(), Ok(image.as_str()));
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
