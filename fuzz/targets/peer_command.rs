//! `peer_command`: the peer's command-line parser ([`p2pchat_peer::command::parse`]).
//!
//! Properties: it never panics on any line (the bytes are read as UTF-8, lossily); a trailing
//! line ending changes nothing; every name in a parsed command is a valid name and every text
//! is valid text; an error renders a non-empty message; and a parsed command written back as
//! its canonical line parses to the same command.

use p2pchat_peer::command::{parse, Command, Password};
use p2pchat_protocol::names;

/// The target body.
pub fn run(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let parsed = parse(&line);
    assert_eq!(
        parse(&format!("{line}\r\n")),
        parsed,
        "a line ending matters"
    );
    match parsed {
        Ok(None) => assert!(line.trim().is_empty()),
        Ok(Some(cmd)) => {
            check_fields(&cmd);
            if let Some(canonical) = canonical_line(&cmd) {
                assert_eq!(
                    parse(&canonical),
                    Ok(Some(cmd.clone())),
                    "{canonical:?} does not parse back to {cmd:?}"
                );
            }
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
}

fn name_ok(name: &str) {
    assert!(names::is_valid_name(name), "invalid name {name:?} accepted");
}

fn text_ok(text: &str) {
    assert!(names::is_valid_text(text), "invalid text {text:?} accepted");
}

fn check_fields(cmd: &Command) {
    match cmd {
        Command::Register { name, .. }
        | Command::Login { name, .. }
        | Command::Search { name }
        | Command::Chat { name }
        | Command::Accept { name }
        | Command::Reject { name }
        | Command::End { name }
        | Command::Rename { name } => name_ok(name),
        Command::Msg { name, text } => {
            name_ok(name);
            text_ok(text);
        }
        Command::Create { room } | Command::Join { room } | Command::Leave { room } => {
            name_ok(room)
        }
        Command::Say { room, text } => {
            name_ok(room);
            text_ok(text);
        }
        Command::Kick { room, name } | Command::Promote { room, name } => {
            name_ok(room);
            name_ok(name);
        }
        Command::Text(text) => text_ok(text),
        // Commands added later are only checked for not panicking.
        _ => {}
    }
}

/// The line a user would type for `cmd`, for the commands whose line is unique (not `/help`,
/// which takes anything).
fn canonical_line(cmd: &Command) -> Option<String> {
    let with_password = |verb: &str, name: &str, password: &Option<Password>| match password {
        Some(Password(p)) => format!("/{verb} {name} {p}"),
        None => format!("/{verb} {name}"),
    };
    Some(match cmd {
        Command::Register { name, password } => with_password("register", name, password),
        Command::Login { name, password } => with_password("login", name, password),
        Command::Logout => "/logout".into(),
        Command::Users => "/users".into(),
        Command::Search { name } => format!("/search {name}"),
        Command::Chat { name } => format!("/chat {name}"),
        Command::Accept { name } => format!("/accept {name}"),
        Command::Reject { name } => format!("/reject {name}"),
        Command::Msg { name, text } => format!("/msg {name} {text}"),
        Command::End { name } => format!("/end {name}"),
        Command::Rooms => "/rooms".into(),
        Command::Create { room } => format!("/create {room}"),
        Command::Join { room } => format!("/join {room}"),
        Command::Leave { room } => format!("/leave {room}"),
        Command::Members { room } => format!("/members {room}"),
        Command::Say { room, text } => format!("/say {room} {text}"),
        Command::Kick { room, name } => format!("/kick {room} {name}"),
        Command::Promote { room, name } => format!("/promote {room} {name}"),
        Command::Mute { target } => format!("/mute {target}"),
        Command::Unmute { target } => format!("/unmute {target}"),
        Command::Rename { name } => format!("/rename {name}"),
        Command::Focus { target } => format!("/focus {target}"),
        Command::Quit => "/quit".into(),
        Command::Text(text) if text.starts_with('/') => format!("/{text}"),
        Command::Text(text) => text.clone(),
        // `/help` and commands added later.
        _ => return None,
    })
}

/// Seeds: one line per command with real arguments, plain text, escapes and bad names.
pub fn seeds() -> Vec<Vec<u8>> {
    [
        "/register alice password1",
        "/login alice",
        "/LOGIN alice pass word",
        "/logout",
        "/users",
        "/search bob",
        "/chat bob",
        "/accept bob",
        "/reject bob",
        "/msg bob hello  there *you*",
        "/end bob",
        "/rooms",
        "/create lobby",
        "/join lobby",
        "/leave lobby",
        "/members lobby",
        "/say lobby hi all",
        "/kick lobby mallory",
        "/promote lobby bob",
        "/mute lobby",
        "/unmute bob",
        "/rename alice2",
        "/focus lobby",
        "/help",
        "/quit",
        "hello there",
        "//not a command",
        "/frobnicate",
        "/join lob by",
        "/msg émile salut",
        "   \r\n",
    ]
    .iter()
    .map(|l| l.as_bytes().to_vec())
    .collect()
}
