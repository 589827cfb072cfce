//! PNG files of frames seen through a pipeline (test artifacts), written with the `png` crate.

use anyhow::{ensure, Context, Result};
use std::path::Path;

/// Converts an `XRGB8888` image (little-endian words: B, G, R, X bytes) with row pitch `pitch`
/// to packed RGB.
pub fn xrgb8888_to_rgb(width: u32, height: u32, pitch: usize, data: &[u8]) -> Result<Vec<u8>> {
    let row = width as usize * 4;
    let need = pitch
        .checked_mul(height.saturating_sub(1) as usize)
        .and_then(|n| n.checked_add(row));
    ensure!(
        pitch >= row && need.is_some_and(|n| n <= data.len()),
        "XRGB8888 {width}x{height} with pitch {pitch} does not fit in {} bytes",
        data.len()
    );
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height as usize {
        for px in data[y * pitch..y * pitch + row].chunks_exact(4) {
            out.extend_from_slice(&[px[2], px[1], px[0]]);
        }
    }
    Ok(out)
}

/// Encodes packed 8-bit RGB as a PNG.
pub fn encode_rgb(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().context("PNG header")?;
    w.write_image_data(rgb).context("PNG image data")?;
    w.finish().context("PNG end")?;
    Ok(out)
}

/// Writes an `XRGB8888` image as a PNG file.
pub fn write_xrgb8888(
    path: &Path,
    width: u32,
    height: u32,
    pitch: usize,
    data: &[u8],
) -> Result<()> {
    let rgb = xrgb8888_to_rgb(width, height, pitch, data)?;
    let png = encode_rgb(width, height, &rgb)?;
    std::fs::write(path, png).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_decoder() {
        let data = [1, 2, 3, 0, 9, 9, 9, 9, 4, 5, 6, 0];
        let rgb = xrgb8888_to_rgb(1, 2, 8, &data).unwrap();
        assert_eq!(rgb, vec![3, 2, 1, 6, 5, 4]);
        let file = encode_rgb(1, 2, &rgb).unwrap();
        assert_eq!(&file[..8], b"\x89PNG\r\n\x1a\n");
        let mut r = png::Decoder::new(std::io::Cursor::new(file))
            .read_info()
            .unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (1, 2));
        assert_eq!(&buf[..info.buffer_size()], &rgb[..]);
    }

    #[test]
    fn refuses_a_frame_that_does_not_fit() {
        assert!(xrgb8888_to_rgb(2, 2, 8, &[0; 12]).is_err());
        assert!(xrgb8888_to_rgb(2, 1, 4, &[0; 8]).is_err());
        assert!(encode_rgb(2, 2, &[0; 3]).is_err());
    }
}
