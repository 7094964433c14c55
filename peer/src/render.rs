//! Rendering [`NodeEvent`]s for the terminal: the exact line-mode lines of DESIGN §8, one JSON
//! object per event for `--json`, and coloured lines with `*bold*`, `_italic_` and OSC 8
//! hyperlinks for an interactive terminal. Pure functions of the event and the [`Mode`].

use std::fmt::Write as _;

use owo_colors::OwoColorize;
use serde_json::{json, Value};

use crate::command::{aliases_of, ALIASES, COMMANDS};
use crate::io::NodeEvent;

pub mod clean;

pub use clean::clean;

/// How output is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Line mode: the plain §8 lines, nothing else added.
    Line,
    /// `--json`: one JSON object per event.
    Json,
    /// A terminal: colour and markup as allowed.
    Interactive(Style),
}

/// What an interactive terminal may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours (off under `NO_COLOR` or `--color never`).
    pub color: bool,
    /// `*bold*`, `_italic_` and OSC 8 hyperlinks in message text.
    pub markup: bool,
}

/// The colour family of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// What we typed.
    Own,
    /// Someone else's message.
    Message,
    /// Everything else that went well.
    Notice,
    /// `error: ...`
    Error,
}

/// The event as shown in `mode`, possibly several lines (only `/help`); `None` when the mode
/// shows nothing for it (our own messages in line mode).
///
/// Text that came from the network is cleaned of control characters first in line and
/// interactive modes ([`cleaned`]); `--json` keeps it exact, JSON-escaped ([`clean::json_safe`]).
pub fn render(event: &NodeEvent, mode: Mode) -> Option<String> {
    match mode {
        Mode::Line => match event {
            NodeEvent::MessageSent { .. } | NodeEvent::RoomMessageSent { .. } => None,
            _ => Some(line(&cleaned(event))),
        },
        Mode::Json => Some(clean::json_safe(json(event))),
        Mode::Interactive(style) => Some(styled(&cleaned(event), style)),
    }
}

/// The event with every string in it passed through [`clean()`]: message texts, error texts
/// (the registry's or a peer's words), and names (valid names never change, but the check
/// costs nothing and does not rely on every path having validated them).
pub fn cleaned(event: &NodeEvent) -> NodeEvent {
    let c = |s: &String| clean(s).into_owned();
    let mut event = event.clone();
    match &mut event {
        NodeEvent::Registered { name }
        | NodeEvent::LoggedIn { name, .. }
        | NodeEvent::Renamed { name }
        | NodeEvent::UserOnline { name, .. }
        | NodeEvent::UserOffline { name }
        | NodeEvent::UserNotFound { name }
        | NodeEvent::ChatRequest { from: name }
        | NodeEvent::ChatStarted { with: name }
        | NodeEvent::ChatRejected { by: name }
        | NodeEvent::ChatRequestDeclined { from: name }
        | NodeEvent::ChatBusy { by: name }
        | NodeEvent::ChatEnded { with: name }
        | NodeEvent::ChatLost { with: name }
        | NodeEvent::ChatRequestSent { to: name }
        | NodeEvent::ChatRequestExpired { with: name, .. }
        | NodeEvent::Focus { target: name }
        | NodeEvent::Muted { target: name }
        | NodeEvent::Unmuted { target: name }
        | NodeEvent::RoomCreated { room: name }
        | NodeEvent::RoomJoined { room: name }
        | NodeEvent::RoomLeft { room: name }
        | NodeEvent::Error { message: name } => *name = c(name),
        NodeEvent::OnlineUsers { names } => names.iter_mut().for_each(|n| *n = c(n)),
        NodeEvent::Message { from: a, text: b }
        | NodeEvent::MessageSent { to: a, text: b }
        | NodeEvent::RoomMessageSent { room: a, text: b }
        | NodeEvent::MemberJoined { room: a, name: b }
        | NodeEvent::MemberLeft { room: a, name: b }
        | NodeEvent::MemberKicked { room: a, name: b }
        | NodeEvent::MemberPromoted { room: a, name: b }
        | NodeEvent::UserRenamed { old: a, new: b } => {
            *a = c(a);
            *b = c(b);
        }
        NodeEvent::RoomMessage { room, from, text } => {
            *room = c(room);
            *from = c(from);
            *text = c(text);
        }
        NodeEvent::RoomList { rooms } => rooms.iter_mut().for_each(|r| r.name = c(&r.name)),
        NodeEvent::MemberList { room, members } => {
            *room = c(room);
            members.iter_mut().for_each(|m| m.name = c(&m.name));
        }
        NodeEvent::Windows {
            chats,
            sent,
            received,
            rooms,
            focus,
        } => {
            for n in chats.iter_mut().chain(sent).chain(received).chain(rooms) {
                *n = c(n);
            }
            if let Some(f) = focus {
                *f = c(f);
            }
        }
        NodeEvent::Away { message } | NodeEvent::Help { command: message } => {
            if let Some(m) = message {
                *m = c(m);
            }
        }
        NodeEvent::LoggedOut
        | NodeEvent::SessionLost
        | NodeEvent::RegistryConnected { .. }
        | NodeEvent::RegistryDisconnected
        | NodeEvent::RegistryReconnected => {}
    }
    event
}

/// The plain text of an event: the §8 line where the contract has one, else a free-form notice.
pub fn line(event: &NodeEvent) -> String {
    match event {
        NodeEvent::Registered { name } => format!("Registered {name}"),
        NodeEvent::LoggedIn { name, .. } => format!("Logged in as {name}"),
        NodeEvent::LoggedOut => "Logged out".into(),
        NodeEvent::SessionLost => "Logged out: log in again".into(),
        NodeEvent::Renamed { name } => format!("Renamed to {name}"),
        NodeEvent::UserOnline { name, addr } => format!("{name} is online at {addr}"),
        NodeEvent::UserOffline { name } => format!("{name} is offline"),
        NodeEvent::UserNotFound { name } => format!("{name} not found"),
        NodeEvent::OnlineUsers { names } => {
            let mut s = String::from("Online:");
            for n in names {
                s.push(' ');
                s.push_str(n);
            }
            s
        }
        NodeEvent::RegistryConnected { addr } => format!("Connected to registry at {addr}"),
        NodeEvent::RegistryDisconnected => "Disconnected from registry".into(),
        NodeEvent::RegistryReconnected => "Reconnected to registry".into(),
        NodeEvent::ChatRequest { from } => format!("Chat request from {from}"),
        NodeEvent::ChatStarted { with } => format!("Chat with {with} started"),
        NodeEvent::UserRenamed { old, new } => format!("{old} is now known as {new}"),
        NodeEvent::ChatRequestSent { to } => format!("Chat request sent to {to}, waiting..."),
        NodeEvent::ChatRequestExpired {
            with,
            outgoing: true,
        } => format!("Chat request to {with} expired without an answer"),
        NodeEvent::ChatRequestExpired {
            with,
            outgoing: false,
        } => format!("Chat request from {with} expired"),
        NodeEvent::Windows {
            chats,
            sent,
            received,
            rooms,
            focus,
        } => {
            let list = |v: &[String]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.join(" ")
                }
            };
            let focus = focus.as_deref().unwrap_or("none");
            format!(
                "Chats: {}\nRequests sent: {}\nRequests received: {}\nRooms: {}\nCurrent: {focus}",
                list(chats),
                list(sent),
                list(received),
                list(rooms)
            )
        }
        NodeEvent::ChatRejected { by } => format!("{by} rejected the chat request"),
        NodeEvent::ChatRequestDeclined { from } => {
            format!("Rejected the chat request from {from}")
        }
        NodeEvent::ChatBusy { by } => format!("{by} is busy"),
        NodeEvent::Message { from, text } => match text.strip_prefix("/me ") {
            Some(action) => format!("* {from} {action}"),
            None => format!("Message from {from}: {text}"),
        },
        NodeEvent::MessageSent { to, text } => format!("To {to}: {text}"),
        NodeEvent::ChatEnded { with } => format!("Chat with {with} ended"),
        NodeEvent::ChatLost { with } => format!("Chat with {with} lost"),
        NodeEvent::Focus { target } => format!("Now talking to {target}"),
        NodeEvent::Muted { target } => format!("Muted {}", mute_label(target)),
        NodeEvent::Unmuted { target } => format!("Unmuted {}", mute_label(target)),
        NodeEvent::Help { command: None } => help_text(),
        NodeEvent::Help {
            command: Some(command),
        } => help_for(command),
        NodeEvent::Away {
            message: Some(message),
        } => format!("You are marked as away: {message}"),
        NodeEvent::Away { message: None } => "You are no longer marked as away".into(),
        NodeEvent::RoomCreated { room } => format!("Created room {room}"),
        NodeEvent::RoomJoined { room } => format!("Joined room {room}"),
        NodeEvent::RoomLeft { room } => format!("Left room {room}"),
        NodeEvent::RoomMessage { room, from, text } => match text.strip_prefix("/me ") {
            Some(action) => format!("* {from} {action} (at {room})"),
            None => format!("Message from {from} at {room}: {text}"),
        },
        NodeEvent::RoomMessageSent { room, text } => format!("To {room}: {text}"),
        NodeEvent::MemberJoined { room, name } => format!("{name} joined {room}"),
        NodeEvent::MemberLeft { room, name } => format!("{name} left {room}"),
        NodeEvent::MemberKicked { room, name } => format!("{name} was kicked from {room}"),
        NodeEvent::MemberPromoted { room, name } => format!("{name} is now admin of {room}"),
        NodeEvent::RoomList { rooms } => {
            if rooms.is_empty() {
                return "No rooms".into();
            }
            let lines: Vec<String> = rooms
                .iter()
                .map(|r| format!("{} members={} online={}", r.name, r.members, r.online))
                .collect();
            lines.join("\n")
        }
        NodeEvent::MemberList { room, members } => {
            let list: Vec<String> = members
                .iter()
                .map(|m| {
                    let role = if m.admin { "admin, " } else { "" };
                    let state = if m.online { "online" } else { "offline" };
                    format!("{} ({role}{state})", m.name)
                })
                .collect();
            format!("Members of {room}: {}", list.join(", "))
        }
        NodeEvent::Error { message } => format!("error: {message}"),
    }
}

/// A mute target for people: `#lab` (how rooms are kept) is `room lab`.
fn mute_label(target: &str) -> String {
    match target.strip_prefix('#') {
        Some(room) => format!("room {room}"),
        None => target.to_string(),
    }
}

/// The `/help` text: every command with one line.
pub fn help_text() -> String {
    let mut s = String::from("Commands:");
    for (_, usage, help) in COMMANDS {
        let _ = write!(s, "\n  {usage:<24} {help}");
    }
    s.push_str("\n  TEXT                     (no leading /) send to the current chat or room");
    s.push_str("\nIRC aliases:");
    for (alias, cmd) in ALIASES {
        let _ = write!(s, " /{alias}=/{cmd}");
    }
    s
}

/// `/help COMMAND`: its usage, what it does, and its aliases.
pub fn help_for(command: &str) -> String {
    let Some((name, usage, help)) = COMMANDS.iter().find(|(name, _, _)| *name == command) else {
        return format!("no command /{command}");
    };
    let mut s = format!("{usage}: {help}");
    let aliases: Vec<String> = aliases_of(name).map(|a| format!("/{a}")).collect();
    if !aliases.is_empty() {
        let _ = write!(s, " (also {})", aliases.join(", "));
    }
    s
}

/// The `"type"` of an event in JSON.
pub fn kind(event: &NodeEvent) -> &'static str {
    match event {
        NodeEvent::Registered { .. } => "registered",
        NodeEvent::LoggedIn { .. } => "logged_in",
        NodeEvent::LoggedOut => "logged_out",
        NodeEvent::SessionLost => "session_lost",
        NodeEvent::Renamed { .. } => "renamed",
        NodeEvent::UserOnline { .. } => "user_online",
        NodeEvent::UserOffline { .. } => "user_offline",
        NodeEvent::UserNotFound { .. } => "user_not_found",
        NodeEvent::OnlineUsers { .. } => "online_users",
        NodeEvent::RegistryConnected { .. } => "registry_connected",
        NodeEvent::RegistryDisconnected => "registry_disconnected",
        NodeEvent::RegistryReconnected => "registry_reconnected",
        NodeEvent::ChatRequest { .. } => "chat_request",
        NodeEvent::ChatStarted { .. } => "chat_started",
        NodeEvent::UserRenamed { .. } => "user_renamed",
        NodeEvent::ChatRequestSent { .. } => "chat_request_sent",
        NodeEvent::ChatRequestExpired { .. } => "chat_request_expired",
        NodeEvent::Windows { .. } => "windows",
        NodeEvent::ChatRejected { .. } => "chat_rejected",
        NodeEvent::ChatRequestDeclined { .. } => "chat_request_declined",
        NodeEvent::ChatBusy { .. } => "chat_busy",
        NodeEvent::Message { .. } => "message",
        NodeEvent::MessageSent { .. } => "message_sent",
        NodeEvent::ChatEnded { .. } => "chat_ended",
        NodeEvent::ChatLost { .. } => "chat_lost",
        NodeEvent::Focus { .. } => "focus",
        NodeEvent::Muted { .. } => "muted",
        NodeEvent::Unmuted { .. } => "unmuted",
        NodeEvent::Help { .. } => "help",
        NodeEvent::Away { .. } => "away",
        NodeEvent::RoomCreated { .. } => "room_created",
        NodeEvent::RoomJoined { .. } => "room_joined",
        NodeEvent::RoomLeft { .. } => "room_left",
        NodeEvent::RoomMessage { .. } => "room_message",
        NodeEvent::RoomMessageSent { .. } => "room_message_sent",
        NodeEvent::MemberJoined { .. } => "member_joined",
        NodeEvent::MemberLeft { .. } => "member_left",
        NodeEvent::MemberKicked { .. } => "member_kicked",
        NodeEvent::MemberPromoted { .. } => "member_promoted",
        NodeEvent::RoomList { .. } => "room_list",
        NodeEvent::MemberList { .. } => "member_list",
        NodeEvent::Error { .. } => "error",
    }
}

/// One JSON object: `"type"`, the event's fields, and `"text"` with the plain line. Message
/// contents are in `"body"` (since `"text"` is the whole line).
pub fn json(event: &NodeEvent) -> String {
    let fields: Value = match event {
        NodeEvent::Registered { name }
        | NodeEvent::Renamed { name }
        | NodeEvent::UserOffline { name }
        | NodeEvent::UserNotFound { name } => json!({ "name": name }),
        NodeEvent::LoggedIn { name, advertised } => {
            json!({ "name": name, "advertised": advertised.to_string() })
        }
        NodeEvent::UserOnline { name, addr } => json!({ "name": name, "addr": addr.to_string() }),
        NodeEvent::OnlineUsers { names } => json!({ "names": names }),
        NodeEvent::RegistryConnected { addr } => json!({ "addr": addr.to_string() }),
        NodeEvent::ChatRequest { from } | NodeEvent::ChatRequestDeclined { from } => {
            json!({ "from": from })
        }
        NodeEvent::ChatStarted { with }
        | NodeEvent::ChatEnded { with }
        | NodeEvent::ChatLost { with } => json!({ "with": with }),
        NodeEvent::ChatRejected { by } | NodeEvent::ChatBusy { by } => json!({ "by": by }),
        NodeEvent::ChatRequestSent { to } => json!({ "to": to }),
        NodeEvent::UserRenamed { old, new } => json!({ "old": old, "new": new }),
        NodeEvent::ChatRequestExpired { with, outgoing } => {
            json!({ "with": with, "outgoing": outgoing })
        }
        NodeEvent::Windows {
            chats,
            sent,
            received,
            rooms,
            focus,
        } => json!({ "chats": chats, "sent": sent, "received": received, "rooms": rooms,
                     "focus": focus }),
        NodeEvent::Message { from, text } => json!({ "from": from, "body": text }),
        NodeEvent::MessageSent { to, text } => json!({ "to": to, "body": text }),
        NodeEvent::Focus { target }
        | NodeEvent::Muted { target }
        | NodeEvent::Unmuted { target } => {
            json!({ "target": target })
        }
        NodeEvent::Error { message } => json!({ "message": message }),
        NodeEvent::RoomCreated { room }
        | NodeEvent::RoomJoined { room }
        | NodeEvent::RoomLeft { room } => json!({ "room": room }),
        NodeEvent::RoomMessage { room, from, text } => {
            json!({ "room": room, "from": from, "body": text })
        }
        NodeEvent::RoomMessageSent { room, text } => json!({ "room": room, "body": text }),
        NodeEvent::MemberJoined { room, name }
        | NodeEvent::MemberLeft { room, name }
        | NodeEvent::MemberKicked { room, name }
        | NodeEvent::MemberPromoted { room, name } => json!({ "room": room, "name": name }),
        NodeEvent::RoomList { rooms } => {
            let rooms: Vec<Value> = rooms
                .iter()
                .map(|r| json!({ "name": r.name, "members": r.members, "online": r.online }))
                .collect();
            json!({ "rooms": rooms })
        }
        NodeEvent::MemberList { room, members } => {
            let members: Vec<Value> = members
                .iter()
                .map(|m| json!({ "name": m.name, "admin": m.admin, "online": m.online }))
                .collect();
            json!({ "room": room, "members": members })
        }
        NodeEvent::LoggedOut
        | NodeEvent::SessionLost
        | NodeEvent::RegistryDisconnected
        | NodeEvent::RegistryReconnected => json!({}),
        NodeEvent::Help { command } => json!({ "command": command }),
        NodeEvent::Away { message } => json!({ "message": message }),
    };
    // Written by hand so that "type" comes first and "text" last, whatever the map order.
    let mut out = format!("{{\"type\":{}", Value::from(kind(event)));
    if let Value::Object(fields) = fields {
        for (key, value) in fields {
            let _ = write!(out, ",{}:{value}", Value::from(key));
        }
    }
    let _ = write!(out, ",\"text\":{}}}", Value::from(line(event)));
    out
}

/// The colour family of an event.
pub fn tone(event: &NodeEvent) -> Tone {
    match event {
        NodeEvent::MessageSent { .. } | NodeEvent::RoomMessageSent { .. } => Tone::Own,
        NodeEvent::Message { .. } | NodeEvent::RoomMessage { .. } => Tone::Message,
        NodeEvent::Error { .. } => Tone::Error,
        _ => Tone::Notice,
    }
}

/// Whether the terminal should ring for this event (a new private message; muted users'
/// messages never become events).
pub fn wants_bell(event: &NodeEvent) -> bool {
    matches!(event, NodeEvent::Message { .. })
}

/// The event for an interactive terminal.
pub fn styled(event: &NodeEvent, style: Style) -> String {
    let action = |text: &str| text.strip_prefix("/me ").map(str::to_string);
    let (prefix, text) = match event {
        NodeEvent::Message { from, text } => match action(text) {
            Some(act) => (format!("* {from} "), act),
            None => (format!("Message from {from}: "), text.clone()),
        },
        NodeEvent::MessageSent { to, text } => match action(text) {
            Some(act) => (format!("To {to}: * "), act),
            None => (format!("To {to}: "), text.clone()),
        },
        NodeEvent::RoomMessage { room, from, text } => match action(text) {
            Some(act) => (format!("[{room}] * {from} "), act),
            None => (format!("Message from {from} at {room}: "), text.clone()),
        },
        NodeEvent::RoomMessageSent { room, text } => match action(text) {
            Some(act) => (format!("To {room}: * "), act),
            None => (format!("To {room}: "), text.clone()),
        },
        _ => {
            let plain = line(event);
            return match (style.color, tone(event)) {
                (false, _) => plain,
                (true, Tone::Error) => plain.red().to_string(),
                (true, _) => plain.yellow().to_string(),
            };
        }
    };
    let body = markup(&text, style.markup);
    if !style.color {
        return format!("{prefix}{body}");
    }
    match tone(event) {
        Tone::Own => format!("{}{body}", prefix.cyan()),
        _ => format!("{}{body}", prefix.green().bold()),
    }
}

/// Message text with `*bold*`, `_italic_` and `http(s)://` links turned into terminal escapes
/// (OSC 8 for links). With `on == false` the text comes back unchanged.
pub fn markup(text: &str, on: bool) -> String {
    if !on {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let after_boundary = text[..i]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || "([<\"'".contains(c));
        if after_boundary && (rest.starts_with("http://") || rest.starts_with("https://")) {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let url = rest[..end].trim_end_matches(|c: char| ".,;:!?)]>'\"".contains(c));
            // OSC 8 targets are printable ASCII; anything else stays plain text. The text
            // shown is the target itself, so a link never hides where it goes.
            if url.bytes().all(|b| b.is_ascii_graphic()) {
                let _ = write!(out, "\x1b]8;;{url}\x1b\\{url}\x1b]8;;\x1b\\");
                i += url.len();
                continue;
            }
        }
        // `i < text.len()` on a char boundary, so there is a char; the default is never used.
        let c = rest.chars().next().unwrap_or(' ');
        let marker_boundary = text[..i]
            .chars()
            .next_back()
            .is_none_or(|p| !p.is_alphanumeric());
        if (c == '*' || c == '_') && marker_boundary {
            if let Some(len) = emphasis_len(&rest[1..], c) {
                let inner = markup(&rest[1..1 + len], on);
                let (open, close) = if c == '*' {
                    ("\x1b[1m", "\x1b[22m")
                } else {
                    ("\x1b[3m", "\x1b[23m")
                };
                let _ = write!(out, "{open}{inner}{close}");
                i += len + 2;
                continue;
            }
        }
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// The length of the emphasised text after an opening `marker`, if a valid closing marker
/// follows: non-empty, no blank at either edge, no newline, the closer not followed by a
/// letter or digit.
fn emphasis_len(after: &str, marker: char) -> Option<usize> {
    if after.starts_with(char::is_whitespace) {
        return None;
    }
    for (j, c) in after.char_indices() {
        if c == '\n' {
            return None;
        }
        if c != marker || j == 0 {
            continue;
        }
        let before = after[..j].chars().next_back()?;
        let next_ok = after[j + 1..]
            .chars()
            .next()
            .is_none_or(|n| !n.is_alphanumeric());
        if !before.is_whitespace() && next_ok {
            return Some(j);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn contract_lines() {
        let addr = "10.0.0.2:4000".parse().unwrap();
        let cases = [
            (NodeEvent::Registered { name: n("al") }, "Registered al"),
            (
                NodeEvent::LoggedIn {
                    name: n("al"),
                    advertised: addr,
                },
                "Logged in as al",
            ),
            (NodeEvent::LoggedOut, "Logged out"),
            (NodeEvent::Renamed { name: n("bo") }, "Renamed to bo"),
            (
                NodeEvent::UserOnline {
                    name: n("bo"),
                    addr,
                },
                "bo is online at 10.0.0.2:4000",
            ),
            (NodeEvent::UserOffline { name: n("bo") }, "bo is offline"),
            (NodeEvent::UserNotFound { name: n("zz") }, "zz not found"),
            (
                NodeEvent::OnlineUsers {
                    names: vec![n("a"), n("b"), n("c")],
                },
                "Online: a b c",
            ),
            (
                NodeEvent::RegistryDisconnected,
                "Disconnected from registry",
            ),
            (NodeEvent::RegistryReconnected, "Reconnected to registry"),
            (
                NodeEvent::ChatRequest { from: n("bo") },
                "Chat request from bo",
            ),
            (
                NodeEvent::ChatStarted { with: n("bo") },
                "Chat with bo started",
            ),
            (
                NodeEvent::ChatRejected { by: n("bo") },
                "bo rejected the chat request",
            ),
            (NodeEvent::ChatBusy { by: n("bo") }, "bo is busy"),
            (
                NodeEvent::Message {
                    from: n("bo"),
                    text: n("hi *there*"),
                },
                "Message from bo: hi *there*",
            ),
            (NodeEvent::ChatEnded { with: n("bo") }, "Chat with bo ended"),
            (NodeEvent::ChatLost { with: n("bo") }, "Chat with bo lost"),
            (
                NodeEvent::error("invalid username or password"),
                "error: invalid username or password",
            ),
        ];
        for (event, want) in cases {
            assert_eq!(render(&event, Mode::Line).as_deref(), Some(want));
        }
    }

    #[test]
    fn own_messages_are_not_lines_in_line_mode() {
        let sent = NodeEvent::MessageSent {
            to: n("bo"),
            text: n("hi"),
        };
        assert_eq!(render(&sent, Mode::Line), None);
        let plain = Style {
            color: false,
            markup: false,
        };
        assert_eq!(
            render(&sent, Mode::Interactive(plain)).unwrap(),
            "To bo: hi"
        );
    }

    #[test]
    fn json_has_type_fields_and_text() {
        let v: Value = serde_json::from_str(&json(&NodeEvent::Message {
            from: n("bo"),
            text: n("hi"),
        }))
        .unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["from"], "bo");
        assert_eq!(v["body"], "hi");
        assert_eq!(v["text"], "Message from bo: hi");

        let v: Value = serde_json::from_str(&json(&NodeEvent::UserOnline {
            name: n("bo"),
            addr: "127.0.0.1:9".parse().unwrap(),
        }))
        .unwrap();
        assert_eq!(v["type"], "user_online");
        assert_eq!(v["addr"], "127.0.0.1:9");
        assert_eq!(v["text"], "bo is online at 127.0.0.1:9");

        let v: Value = serde_json::from_str(&json(&NodeEvent::OnlineUsers {
            names: vec![n("a"), n("b")],
        }))
        .unwrap();
        assert_eq!(v["names"], json!(["a", "b"]));

        let v: Value = serde_json::from_str(&json(&NodeEvent::error("boom"))).unwrap();
        assert_eq!(
            v,
            json!({"type": "error", "message": "boom", "text": "error: boom"})
        );

        let line = json(&NodeEvent::ChatBusy { by: n("bo") });
        assert_eq!(
            line, r#"{"type":"chat_busy","by":"bo","text":"bo is busy"}"#,
            "type first, text last"
        );

        let help = json(&NodeEvent::Help { command: None });
        assert!(!help.contains('\n'), "one object per line");
    }

    #[test]
    fn help_lists_every_command() {
        let help = help_text();
        for (_, usage, _) in COMMANDS {
            assert!(help.contains(usage), "{usage}");
        }
        assert_eq!(help.lines().count(), COMMANDS.len() + 3);
        assert!(help.contains("/part=/leave"));
        assert_eq!(
            help_for("leave"),
            "/leave [ROOM]: leave a chat room (without ROOM: the current one) (also /part)"
        );
    }

    #[test]
    fn actions_and_cleaning_in_every_mode() {
        let plain = Mode::Interactive(Style {
            color: false,
            markup: false,
        });
        let act = NodeEvent::Message {
            from: n("bo"),
            text: n("/me waves\x1b[2J"),
        };
        assert_eq!(render(&act, Mode::Line).unwrap(), "* bo waves^[[2J");
        assert_eq!(render(&act, plain).unwrap(), "* bo waves^[[2J");
        let room = NodeEvent::RoomMessage {
            room: n("lab"),
            from: n("bo"),
            text: n("/me waves"),
        };
        assert_eq!(render(&room, Mode::Line).unwrap(), "* bo waves (at lab)");
        assert_eq!(render(&room, plain).unwrap(), "[lab] * bo waves");
        let err = NodeEvent::error("bad\rthing\u{9b}");
        assert_eq!(
            render(&err, Mode::Line).unwrap(),
            "error: bad^Mthing<U+009B>"
        );
        let json = render(&err, Mode::Json).unwrap();
        assert!(json.contains(r"bad\rthing\u009b"), "{json}");
    }

    #[test]
    fn markup_on_a_terminal() {
        assert_eq!(markup("a *b* c", true), "a \x1b[1mb\x1b[22m c");
        assert_eq!(markup("_it_!", true), "\x1b[3mit\x1b[23m!");
        assert_eq!(
            markup("*bold _both_*", true),
            "\x1b[1mbold \x1b[3mboth\x1b[23m\x1b[22m"
        );
        assert_eq!(
            markup("see https://example.org/x.", true),
            "see \x1b]8;;https://example.org/x\x1b\\https://example.org/x\x1b]8;;\x1b\\."
        );
        // Not emphasis: inside words, unclosed, blank edges.
        assert_eq!(markup("snake_case_name", true), "snake_case_name");
        assert_eq!(markup("2*3*4", true), "2*3*4");
        assert_eq!(markup("a * b * c", true), "a * b * c");
        assert_eq!(markup("*open", true), "*open");
        assert_eq!(markup("héllo *wörld*", true), "héllo \x1b[1mwörld\x1b[22m");
    }

    #[test]
    fn markup_off_the_terminal_is_plain() {
        let text = "a *b* _c_ https://x.org";
        assert_eq!(markup(text, false), text);
        let event = NodeEvent::Message {
            from: n("bo"),
            text: n(text),
        };
        let off = Style {
            color: false,
            markup: false,
        };
        assert_eq!(styled(&event, off), format!("Message from bo: {text}"));
    }

    #[test]
    fn colour_follows_the_style() {
        let err = NodeEvent::error("x");
        let on = Style {
            color: true,
            markup: true,
        };
        let off = Style {
            color: false,
            markup: true,
        };
        assert!(styled(&err, on).contains("\x1b[31m"));
        assert_eq!(styled(&err, off), "error: x");
        let msg = NodeEvent::Message {
            from: n("bo"),
            text: n("*hi*"),
        };
        assert_eq!(styled(&msg, off), "Message from bo: \x1b[1mhi\x1b[22m");
        assert!(styled(&msg, on).contains("\x1b[32m"));
        assert!(wants_bell(&msg));
        assert!(!wants_bell(&err));
    }
}
