//! Cleaning text that came from the network before it reaches a terminal.
//!
//! A peer or the registry can put any Unicode in a message or an error text. Written to a
//! terminal as is, `ESC [ 2 J` clears the screen, `CR` lets a line overwrite itself with a
//! forged sender, `BEL` rings, an OSC 8 sequence shows one link and opens another, and the
//! bidirectional overrides reorder what follows them. So every character that a terminal may
//! act on is replaced by a visible stand-in: C0 controls by caret notation (`ESC` becomes `^[`,
//! `CR` `^M`, `BEL` `^G`, `LF` `^J`), `DEL` by `^?`, and C1 controls, bidirectional
//! controls and the line/paragraph separators by `<U+XXXX>`. A tab becomes one space. What
//! remains is printable text, so the only escape sequences on screen are the ones our renderer
//! writes itself.
//!
//! `--json` output is not cleaned (scripts get the bytes that were sent); [`json_safe`] only
//! spells the few characters that JSON leaves raw but a terminal may act on as `\uXXXX`
//! escapes, which decode to the same string.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether a terminal may act on `c` instead of printing it (or it reorders the text around
/// it): the characters [`clean`] replaces.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() // C0, DEL and C1
        || matches!(
            c,
            '\u{061C}'              // Arabic letter mark
            | '\u{200E}' | '\u{200F}' // left-to-right and right-to-left marks
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202A}'..='\u{202E}' // embeddings and overrides
            | '\u{2066}'..='\u{2069}' // isolates
        )
}

/// `text` with every [`is_unsafe`] character shown visibly (see the module docs). Borrows when
/// there is nothing to replace, which is the usual case.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push(' '),
            '\0'..='\u{1F}' => {
                out.push('^');
                // 0x00..=0x1F + 0x40 is '@'..='_', all ASCII.
                out.push(char::from(c as u8 + 0x40));
            }
            '\u{7F}' => out.push_str("^?"),
            c if is_unsafe(c) => {
                let _ = write!(out, "<U+{:04X}>", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A JSON line with the characters JSON leaves raw but a terminal may act on (`DEL`, C1
/// controls, bidirectional controls, line separators) written as `\uXXXX` escapes. Such
/// characters only occur inside JSON strings, where the escape decodes to the same character,
/// so the value a script reads is byte-exact.
pub fn json_safe(line: String) -> String {
    if !line.chars().any(is_unsafe) {
        return line;
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if is_unsafe(c) {
            // serde_json already escaped C0 controls, so these are all >= U+007F and in the
            // Basic Multilingual Plane: one \u escape each.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn controls_are_shown_visibly() {
        assert_eq!(clean("plain *text* é ✓"), "plain *text* é ✓");
        assert!(matches!(clean("plain"), Cow::Borrowed(_)));
        assert_eq!(clean("\x1b[2J\x1b[Hcleared"), "^[[2J^[[Hcleared");
        assert_eq!(
            clean("fake\rMessage from bob: hi"),
            "fake^MMessage from bob: hi"
        );
        assert_eq!(clean("ding\x07"), "ding^G");
        assert_eq!(clean("two\nlines"), "two^Jlines");
        assert_eq!(clean("a\tb\0c\x7f"), "a b^@c^?");
        assert_eq!(clean("c1 \u{9b}31m"), "c1 <U+009B>31m");
        assert_eq!(clean("\u{202E}txt.exe"), "<U+202E>txt.exe");
        assert_eq!(clean("\u{2066}x\u{2069}"), "<U+2066>x<U+2069>");
        assert_eq!(
            clean("\x1b]8;;https://evil.example\x1b\\https://good.example\x1b]8;;\x1b\\"),
            "^[]8;;https://evil.example^[\\https://good.example^[]8;;^[\\"
        );
    }

    #[test]
    fn json_keeps_the_value_and_hides_c1_and_bidi() {
        let text = "a\u{9b}b\u{202e}c\u{7f}\x1b";
        let line = json_safe(serde_json::json!({ "body": text }).to_string());
        assert!(line.is_ascii(), "{line}");
        assert!(!line.chars().any(|c| c.is_control()), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["body"], text);
    }

    proptest! {
        #[test]
        fn cleaned_text_has_no_unsafe_character(text in any::<String>()) {
            let out = clean(&text);
            prop_assert!(!out.chars().any(is_unsafe), "{:?} -> {:?}", text, out);
            prop_assert!(!out.chars().any(char::is_control));
            // Safe text is untouched.
            if !text.chars().any(is_unsafe) {
                prop_assert_eq!(out.as_ref(), text.as_str());
            }
        }

        #[test]
        fn json_safe_round_trips(text in any::<String>()) {
            let line = json_safe(serde_json::json!({ "body": &text }).to_string());
            prop_assert!(!line.chars().any(is_unsafe));
            let back: serde_json::Value = serde_json::from_str(&line).unwrap();
            prop_assert_eq!(back["body"].as_str(), Some(text.as_str()));
        }
    }
}
