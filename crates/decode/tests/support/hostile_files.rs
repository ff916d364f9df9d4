//! Crafted files for the hostile-input tests of `decode` and `preprocess`
//! (included by path by the latter): a plain JPEG, and bombs whose headers
//! claim far more pixels than their bytes hold.
#![allow(dead_code)]

/// A baseline JPEG of a gradient, `w x h`, quality 90.
pub fn jpeg(w: u16, h: u16) -> Vec<u8> {
    let px: Vec<u8> = (0..w as usize * h as usize)
        .flat_map(|i| {
            let (x, y) = (i % w as usize, i / w as usize);
            [(x * 3) as u8, (y * 5) as u8, ((x + y) * 2) as u8]
        })
        .collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&px, w, h, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

/// A 16x16 JPEG whose frame header (SOF0) claims `w x h`: its few blocks of
/// data end long before such an image would, as in a crafted bomb.
pub fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut bytes = jpeg(16, 16);
    let sof = bytes
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .expect("a baseline frame header");
    // FF C0, length (2), precision (1), height (2), width (2).
    bytes[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    bytes
}

/// A real 8x8 PNG whose header (IHDR, CRC recomputed) then claims `w x h`.
pub fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, 8, 8);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(&[0u8; 8 * 8 * 3]).unwrap();
    }
    // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), ...
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32fast::hash(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}
