//! Validation of user-chosen strings, shared by every side so they agree on what is valid.

/// Longest username or room name, in characters (all ASCII).
pub const MAX_NAME: usize = 32;
/// Shortest and longest password, in bytes.
pub const PASSWORD_BYTES: std::ops::RangeInclusive<usize> = 8..=128;
/// Longest chat or room message text, in bytes of UTF-8.
pub const MAX_TEXT: usize = 4096;

/// Whether `name` is a valid username or room name: 1-32 characters of `[A-Za-z0-9_.-]`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether `password` has an acceptable length.
pub fn is_valid_password(password: &str) -> bool {
    PASSWORD_BYTES.contains(&password.len())
}

/// Whether `text` is an acceptable message: non-empty, at most [`MAX_TEXT`] bytes.
pub fn is_valid_text(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_TEXT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("alice"));
        assert!(is_valid_name("A.b_c-9"));
        assert!(is_valid_name(&"x".repeat(32)));
        assert!(!is_valid_name(&"x".repeat(33)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name("émile"));
        assert!(!is_valid_name("a/b"));
    }

    #[test]
    fn passwords_and_text() {
        assert!(!is_valid_password("short"));
        assert!(is_valid_password("eightchr"));
        assert!(is_valid_password(&"p".repeat(128)));
        assert!(!is_valid_password(&"p".repeat(129)));
        assert!(is_valid_text("hi"));
        assert!(!is_valid_text(""));
        assert!(!is_valid_text(&"x".repeat(MAX_TEXT + 1)));
    }
}
