//! Lock name rules, checked before any statement is sent.

use crate::error::{Error, Result};

/// The longest lock name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Check a lock name: 1 to [`MAX_NAME_BYTES`] bytes, no NUL and no control characters.
///
/// Every operation runs this first, so a bad name is an [`Error::InvalidName`] and
/// never reaches the database.
///
/// ```
/// assert!(lockmgr::validate_name("job:42").is_ok());
/// assert!(lockmgr::validate_name("").is_err());
/// assert!(lockmgr::validate_name("tab\there").is_err());
/// assert!(lockmgr::validate_name(&"x".repeat(256)).is_err());
/// ```
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "a lock name cannot be empty"
    } else if name.len() > MAX_NAME_BYTES {
        "a lock name is at most 255 bytes"
    } else if name.contains('\0') {
        "a lock name cannot contain a NUL character"
    } else if name.chars().any(char::is_control) {
        "a lock name cannot contain control characters"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: preview(name),
        reason,
    })
}

/// The name as a quoted, escaped string, cut to a length fit for one line.
fn preview(name: &str) -> String {
    const SHOWN: usize = 60;
    let total = name.chars().count();
    if total <= SHOWN {
        format!("{name:?}")
    } else {
        let head: String = name.chars().take(SHOWN).collect();
        format!("{head:?}… ({} bytes)", name.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_in_bytes() {
        assert!(validate_name(&"é".repeat(127)).is_ok()); // 254 bytes
        assert!(validate_name(&"é".repeat(128)).is_err()); // 256 bytes
        assert!(validate_name(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn refuses_control_characters() {
        for bad in ["a\0b", "line\nbreak", "bell\u{7}", "del\u{7f}", "c1\u{85}"] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
        for good in ["job:42", "quote'\"; DROP TABLE x; --", "日本語 ✓", "a b"] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn huge_names_are_shown_short() {
        let err = validate_name(&"x".repeat(1 << 20)).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
        assert!(err.contains("1048576 bytes"), "{err}");
    }
}
