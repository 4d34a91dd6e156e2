//! QR codes of otpauth URIs as lines of Unicode half blocks, one character cell holding two
//! modules so the code stays square in a terminal. Shared by both faces (the CLI prints the
//! lines, the console draws them in a widget); it produces text only and must never emit a
//! terminal escape sequence.
//!
//! [`Glyphs::Dark`] marks dark modules with blocks, to be drawn dark on light (the faces set
//! black on white); [`Glyphs::Light`] marks the light ones, which reads right as-is on a dark
//! terminal without colours (NO_COLOR). A quiet zone of four light modules surrounds the code,
//! as the QR standard asks, so scanners find it next to other text. Error correction is level L:
//! a screen is a clean medium, and the smallest code fits the most terminals.

use qrcode::{Color, EcLevel, QrCode};
use zeroize::Zeroizing;

/// Light modules around the code on every side.
pub(crate) const QUIET_ZONE: usize = 4;

/// Which modules the block characters paint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Glyphs {
    Dark,
    Light,
}

fn encode(data: &[u8]) -> Option<QrCode> {
    QrCode::with_error_correction_level(data, EcLevel::L).ok()
}

/// Width and height in character cells, quiet zone included; `None` if too long for any QR
/// version.
pub(crate) fn size(data: &[u8]) -> Option<(usize, usize)> {
    let side = encode(data)?.width() + 2 * QUIET_ZONE;
    Some((side, side.div_ceil(2)))
}

/// The QR code of `data` as lines of half-block characters, quiet zone included. `None` if the
/// data is too long for any QR version. Zeroized on drop: an otpauth URI carries the secret.
pub(crate) fn half_block_lines(data: &[u8], glyphs: Glyphs) -> Option<Zeroizing<Vec<String>>> {
    let code = encode(data)?;
    let width = code.width();
    let colors = code.to_colors();
    let side = width + 2 * QUIET_ZONE;
    let painted = |x: usize, y: usize| -> bool {
        let inside = |v: usize| (QUIET_ZONE..QUIET_ZONE + width).contains(&v);
        if y >= side {
            // Below the last row (odd side): light, like the quiet zone it extends.
            return glyphs == Glyphs::Light;
        }
        let dark = inside(x)
            && inside(y)
            && colors[(y - QUIET_ZONE) * width + (x - QUIET_ZONE)] == Color::Dark;
        dark == (glyphs == Glyphs::Dark)
    };
    let mut lines = Zeroizing::new(Vec::with_capacity(side.div_ceil(2)));
    for y in (0..side).step_by(2) {
        let mut line = String::with_capacity(side * 3);
        for x in 0..side {
            line.push(match (painted(x, y), painted(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        lines.push(line);
    }
    Some(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the modules back from the half blocks.
    fn modules(lines: &[String]) -> Vec<Vec<bool>> {
        let mut rows = Vec::new();
        for line in lines {
            let (top, bottom): (Vec<bool>, Vec<bool>) = line
                .chars()
                .map(|c| match c {
                    '█' => (true, true),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    _ => (false, false),
                })
                .unzip();
            rows.push(top);
            rows.push(bottom);
        }
        rows
    }

    #[test]
    fn round_trips_the_modules_with_a_quiet_zone() {
        let data = b"otpauth://totp/sparekey:alice?secret=JBSWY3DPEHPK3PXP&issuer=sparekey";
        let code = QrCode::with_error_correction_level(data, EcLevel::L).unwrap();
        let w = code.width();
        let lines = half_block_lines(data, Glyphs::Dark).unwrap();
        assert_eq!(size(data), Some((w + 2 * QUIET_ZONE, lines.len())));
        assert_eq!(lines.len(), (w + 2 * QUIET_ZONE).div_ceil(2));
        let rows = modules(&lines);
        for (y, row) in rows.iter().enumerate().take(w + 2 * QUIET_ZONE) {
            assert_eq!(row.len(), w + 2 * QUIET_ZONE);
            for (x, &is_dark) in row.iter().enumerate() {
                let expected = (QUIET_ZONE..QUIET_ZONE + w).contains(&x)
                    && (QUIET_ZONE..QUIET_ZONE + w).contains(&y)
                    && code[(x - QUIET_ZONE, y - QUIET_ZONE)] == Color::Dark;
                assert_eq!(is_dark, expected, "module ({x}, {y})");
            }
        }
        // The finder pattern's top-left corner is dark, just inside the quiet zone.
        assert!(rows[QUIET_ZONE][QUIET_ZONE]);
        assert!(!rows[QUIET_ZONE - 1][QUIET_ZONE]);
    }

    #[test]
    fn light_glyphs_are_the_negative_of_dark_ones() {
        let data = b"otpauth://totp/sparekey:bob?secret=JBSWY3DPEHPK3PXP";
        let dark = modules(&half_block_lines(data, Glyphs::Dark).unwrap());
        let light = modules(&half_block_lines(data, Glyphs::Light).unwrap());
        let side = size(data).unwrap().0;
        for y in 0..side {
            for x in 0..side {
                assert_ne!(dark[y][x], light[y][x], "module ({x}, {y})");
            }
        }
    }

    #[test]
    fn too_long_is_none() {
        assert!(half_block_lines(&[b'x'; 5000], Glyphs::Dark).is_none());
        assert!(size(&[b'x'; 5000]).is_none());
    }
}
