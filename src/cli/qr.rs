//! Terminal QR codes for otpauth URIs, drawn with Unicode half blocks so one character cell holds
//! two modules (the code stays square in a terminal). Shared by both faces: the CLI prints the
//! lines, the console can draw them in a widget.
//!
//! Convention: a block character (`▀`, `▄`, `█`) marks *dark* modules and a space light ones, so
//! the lines must be drawn dark on light (foreground black, background white): the CLI sets those
//! colours with ANSI escapes on a terminal; the console sets them with its own styles. A quiet
//! zone of four light modules surrounds the code, as the QR standard asks, so scanners find it
//! even next to other text.

use qrcode::{Color, EcLevel, QrCode};
use zeroize::Zeroizing;

/// Light modules around the code on every side.
pub const QUIET_ZONE: usize = 4;

/// The QR code of `data` as lines of half-block characters (dark = block, see the module docs),
/// including the quiet zone. `None` if the data is too long for any QR version.
pub fn half_block_lines(data: &[u8]) -> Option<Zeroizing<Vec<String>>> {
    let code = QrCode::with_error_correction_level(data, EcLevel::M).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    let side = width + 2 * QUIET_ZONE;
    let dark = |x: usize, y: usize| -> bool {
        let inside = |v: usize| (QUIET_ZONE..QUIET_ZONE + width).contains(&v);
        inside(x) && inside(y) && colors[(y - QUIET_ZONE) * width + (x - QUIET_ZONE)] == Color::Dark
    };
    let mut lines = Zeroizing::new(Vec::with_capacity(side.div_ceil(2)));
    for y in (0..side).step_by(2) {
        let mut line = String::with_capacity(side * 3);
        for x in 0..side {
            // Past the last row is light quiet zone too.
            line.push(match (dark(x, y), dark(x, y + 1)) {
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
        let code = QrCode::with_error_correction_level(data, EcLevel::M).unwrap();
        let w = code.width();
        let lines = half_block_lines(data).unwrap();
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
    fn too_long_is_none() {
        assert!(half_block_lines(&[b'x'; 5000]).is_none());
    }
}
