//! What a new set of backup codes looks like outside sparekey: the numbered list (screen,
//! clipboard) and the export file, the same for both faces. Must never write anything itself:
//! the faces decide where the text goes; every buffer is zeroized on drop.

use zeroize::Zeroizing;

use crate::core::backup_code::BackupCode;
use crate::core::service::IssuedCodes;
use crate::core::time_text::utc_minute;

/// `1. k7p2-9xqm-b4ct-8hzr`, one per line, numbers right-aligned, so a paste keeps the order.
pub fn numbered_list(codes: &[BackupCode], boxes: bool) -> Zeroizing<String> {
    let width = codes.len().to_string().len();
    let mut text = Zeroizing::new(String::with_capacity(codes.len() * 32));
    for (i, code) in codes.iter().enumerate() {
        text.push_str(&format!(
            "{:>width$}. {}",
            i + 1,
            if boxes { "[ ] " } else { "" }
        ));
        text.push_str(&code.display());
        text.push('\n');
    }
    text
}

/// The export file: who, when, the numbered codes with a box to tick, and how to use and keep
/// them.
pub fn sheet(issued: &IssuedCodes) -> Zeroizing<String> {
    let mut text = Zeroizing::new(format!(
        "sparekey recovery codes\n\nIssuer:  {}\nAccount: {}\nDate:    {}\n\n",
        issued.issuer,
        issued.account,
        utc_minute(issued.issued_at)
    ));
    text.push_str(&numbered_list(&issued.codes, true));
    text.push_str(
        "\nEach code signs in once, with your password, when your authenticator is not at hand; tick its box when used.\n\
         Keep this list offline and private (print it or put it in a password manager, away from your phone).\n\
         When few codes are left, generate a new set: every code above then stops working.\n",
    );
    text
}

/// The file name proposed for an export, with anything a file system might choke on replaced.
pub fn file_name(account: &str) -> String {
    let safe: String = account
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "sparekey-recovery-codes-{}.txt",
        safe.trim_start_matches('.')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::backup_code::generate_set;
    use crate::core::entropy::SeededEntropy;

    #[test]
    fn sheet_has_everything_a_person_needs() {
        let codes = generate_set(&mut SeededEntropy::new(4), 10);
        let displayed: Vec<String> = codes.iter().map(|c| c.display().to_string()).collect();
        let issued = IssuedCodes {
            account: "alice".into(),
            issuer: "Acme".into(),
            issued_at: 1_714_566_896,
            codes,
        };
        let text = sheet(&issued);
        assert!(text.contains("Issuer:  Acme\nAccount: alice\nDate:    2024-05-01 12:34 UTC"));
        assert!(text.contains(&format!(" 1. [ ] {}\n", displayed[0])));
        assert!(text.contains(&format!("10. [ ] {}\n", displayed[9])));
        assert_eq!(text.lines().filter(|l| l.contains("[ ]")).count(), 10);
        assert_eq!(text.trim_end().lines().rev().take(3).count(), 3);
        assert!(!numbered_list(&issued.codes, false).contains("[ ]"));
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(
            file_name("alice@example.com"),
            "sparekey-recovery-codes-alice@example.com.txt"
        );
        assert_eq!(
            file_name("../etc/x y"),
            "sparekey-recovery-codes-_etc_x_y.txt"
        );
    }
}
