//! Parsing a line the user typed into a [`Command`]. Pure: no I/O, unit tested.
//!
//! IRC habits: a line starting with `/` is a command (`/msg bob hi`), any other line is text for
//! the current target, and `//text` sends the text `/text`.

use std::fmt;

use p2pchat_protocol::{names, status};

/// A password typed by the user. Its `Debug` never shows it, so commands can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// One user command (DESIGN §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/register NAME [PASSWORD]` (without a password, interactive mode prompts for it).
    Register {
        /// Username.
        name: String,
        /// Password, if typed on the line.
        password: Option<Password>,
    },
    /// `/login NAME [PASSWORD]` (without a password, interactive mode prompts for it).
    Login {
        /// Username.
        name: String,
        /// Password, if typed on the line.
        password: Option<Password>,
    },
    /// `/logout`
    Logout,
    /// `/users`
    Users,
    /// `/search NAME`
    Search {
        /// Username.
        name: String,
    },
    /// `/chat NAME`
    Chat {
        /// Username.
        name: String,
    },
    /// `/accept NAME`
    Accept {
        /// Username.
        name: String,
    },
    /// `/reject NAME`
    Reject {
        /// Username.
        name: String,
    },
    /// `/msg NAME TEXT`
    Msg {
        /// Username.
        name: String,
        /// Text.
        text: String,
    },
    /// `/end NAME`
    End {
        /// Username.
        name: String,
    },
    /// `/rooms`
    Rooms,
    /// `/create ROOM`
    Create {
        /// Room.
        room: String,
    },
    /// `/join ROOM`
    Join {
        /// Room.
        room: String,
    },
    /// `/leave ROOM`
    Leave {
        /// Room.
        room: String,
    },
    /// `/members ROOM`
    Members {
        /// Room.
        room: String,
    },
    /// `/say ROOM TEXT`
    Say {
        /// Room.
        room: String,
        /// Text.
        text: String,
    },
    /// `/kick ROOM NAME`
    Kick {
        /// Room.
        room: String,
        /// Member.
        name: String,
    },
    /// `/promote ROOM NAME`
    Promote {
        /// Room.
        room: String,
        /// Member.
        name: String,
    },
    /// `/mute ROOM|NAME` (`#ROOM` for the room when a user has the same name)
    Mute {
        /// User or room.
        target: String,
    },
    /// `/unmute ROOM|NAME`
    Unmute {
        /// User or room.
        target: String,
    },
    /// `/rename NEWNAME`
    Rename {
        /// New username.
        name: String,
    },
    /// `/focus ROOM|NAME`
    Focus {
        /// User or room.
        target: String,
    },
    /// `/leave`, `/members` or `/end` without a name: the room or chat that has the focus.
    OnFocus(FocusCommand),
    /// `/chats` (`/windows`): open chats, pending requests and joined rooms.
    Chats,
    /// `/me TEXT`: an action line to the current chat or room.
    Me(String),
    /// `/away [MESSAGE]`: mark us away (private messages get MESSAGE once), or back.
    Away(Option<String>),
    /// `/help [COMMAND]`
    Help(Option<String>),
    /// `/quit [MESSAGE]` (the message goes to open chats and rooms first).
    Quit(Option<String>),
    /// A line without `/`: text for the current target.
    Text(String),
}

/// A command that may leave out its room or user to mean the current one (IRC's `/part`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FocusCommand {
    /// `/leave` (`/part`): leave the focused room.
    Leave,
    /// `/members` (`/names`): list the focused room's members.
    Members,
    /// `/end` (`/close`): end the focused chat.
    End,
}

/// A line that is not a valid command. `Display` is the message after `error: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No such command.
    #[error("unknown command /{0} (try /help)")]
    Unknown(String),
    /// Wrong number of arguments.
    #[error("usage: {0}")]
    Usage(&'static str),
    /// A username or room name breaks the naming rules.
    #[error("{what} {name}: {rule}")]
    InvalidName {
        /// `invalid username` or `invalid room name`.
        what: &'static str,
        /// The offending name.
        name: String,
        /// The rule, as the registry words it.
        rule: &'static str,
    },
    /// `/help` of a command that does not exist.
    #[error("no command /{0} (try /help)")]
    NoHelp(String),
    /// Message text over the limit.
    #[error("message too long (at most {} bytes)", names::MAX_TEXT)]
    TextTooLong,
}

/// Every command: name, usage, one line of help. `/help` prints this table.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "register",
        "/register NAME PASSWORD",
        "create an account (without PASSWORD: prompt for it)",
    ),
    (
        "login",
        "/login NAME PASSWORD",
        "log in (without PASSWORD: prompt for it)",
    ),
    ("logout", "/logout", "log out"),
    ("users", "/users", "list the users online"),
    (
        "search",
        "/search NAME",
        "show whether a user is online, and where",
    ),
    ("chat", "/chat NAME", "ask a user for a private chat"),
    ("accept", "/accept NAME", "accept a chat request"),
    ("reject", "/reject NAME", "reject a chat request"),
    ("msg", "/msg NAME TEXT", "send a private message"),
    (
        "end",
        "/end [NAME]",
        "end a private chat (without NAME: the current one)",
    ),
    ("rooms", "/rooms", "list the chat rooms"),
    ("create", "/create ROOM", "create a chat room"),
    ("join", "/join ROOM", "join a chat room"),
    (
        "leave",
        "/leave [ROOM]",
        "leave a chat room (without ROOM: the current one)",
    ),
    (
        "members",
        "/members [ROOM]",
        "list the members of a room (without ROOM: the current one)",
    ),
    ("say", "/say ROOM TEXT", "send a message to a room"),
    (
        "kick",
        "/kick ROOM NAME",
        "remove a member from a room (admins)",
    ),
    (
        "promote",
        "/promote ROOM NAME",
        "make a member admin of a room (admins)",
    ),
    (
        "mute",
        "/mute ROOM|NAME",
        "hide messages from a room or user",
    ),
    (
        "unmute",
        "/unmute ROOM|NAME",
        "show messages from a room or user again",
    ),
    ("rename", "/rename NEWNAME", "change your username"),
    (
        "focus",
        "/focus ROOM|NAME",
        "send plain lines to this chat or room (#ROOM: the room)",
    ),
    (
        "chats",
        "/chats",
        "list open chats, pending requests and joined rooms",
    ),
    ("me", "/me TEXT", "an action to the current chat or room"),
    (
        "away",
        "/away [MESSAGE]",
        "mark yourself away (without MESSAGE: back)",
    ),
    (
        "help",
        "/help [COMMAND]",
        "list the commands, or explain one",
    ),
    (
        "quit",
        "/quit [MESSAGE]",
        "say MESSAGE to open chats and rooms, log out and exit",
    ),
];

/// IRC names for our commands: alias, command.
pub const ALIASES: &[(&str, &str)] = &[
    ("j", "join"),
    ("part", "leave"),
    ("names", "members"),
    ("whois", "search"),
    ("query", "chat"),
    ("nick", "rename"),
    ("list", "rooms"),
    ("close", "end"),
    ("windows", "chats"),
];

/// The command an alias (or a command word) stands for, lower-cased.
pub fn canonical(word: &str) -> String {
    let word = word.trim_start_matches('/').to_ascii_lowercase();
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == word)
        .map_or(word, |(_, cmd)| (*cmd).to_string())
}

/// The aliases of a command.
pub fn aliases_of(cmd: &str) -> impl Iterator<Item = &'static str> + '_ {
    ALIASES
        .iter()
        .filter(move |(_, c)| *c == cmd)
        .map(|(alias, _)| *alias)
}

fn usage(cmd: &str) -> &'static str {
    COMMANDS
        .iter()
        .find(|(name, _, _)| *name == cmd)
        .map_or("/help", |(_, usage, _)| usage)
}

/// Parses one line. `Ok(None)` for a blank line.
pub fn parse(line: &str) -> Result<Option<Command>, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    let Some(rest) = line.strip_prefix('/') else {
        return text(line).map(|t| Some(Command::Text(t)));
    };
    if rest.starts_with('/') {
        return text(rest).map(|t| Some(Command::Text(t)));
    }
    let (word, args) = split_word(rest);
    let cmd = canonical(word);
    let usage = usage(&cmd);
    let words: Vec<&str> = args.split_whitespace().collect();
    let user = |s: &str| valid(s, "invalid username", status::INVALID_NAME);
    let room = |s: &str| valid(s, "invalid room name", status::INVALID_ROOM_NAME);
    // `#lab` is the room lab, for when a user has the same name.
    let target = |s: &str| match s.strip_prefix('#') {
        Some(r) => room(r).map(|r| format!("#{r}")),
        None => user(s),
    };
    // A password is the rest of the line after the name: it may contain spaces.
    let password = || Password(split_word(args).1.trim_end().to_string());
    let command = match (cmd.as_str(), words.as_slice()) {
        ("register", [n]) => Command::Register {
            name: user(n)?,
            password: None,
        },
        ("register", [n, _, ..]) => Command::Register {
            name: user(n)?,
            password: Some(password()),
        },
        ("login", [n]) => Command::Login {
            name: user(n)?,
            password: None,
        },
        ("login", [n, _, ..]) => Command::Login {
            name: user(n)?,
            password: Some(password()),
        },
        ("logout", []) => Command::Logout,
        ("users", []) => Command::Users,
        ("search", [n]) => Command::Search { name: user(n)? },
        ("chat", [n]) => Command::Chat { name: user(n)? },
        ("accept", [n]) => Command::Accept { name: user(n)? },
        ("reject", [n]) => Command::Reject { name: user(n)? },
        ("msg", [n, _, ..]) => Command::Msg {
            name: user(n)?,
            text: text(split_word(args).1)?,
        },
        ("end", [n]) => Command::End { name: user(n)? },
        ("rooms", []) => Command::Rooms,
        ("create", [r]) => Command::Create { room: room(r)? },
        ("join", [r]) => Command::Join { room: room(r)? },
        ("leave", [r]) => Command::Leave { room: room(r)? },
        ("members", [r]) => Command::Members { room: room(r)? },
        ("say", [r, _, ..]) => Command::Say {
            room: room(r)?,
            text: text(split_word(args).1)?,
        },
        ("kick", [r, n]) => Command::Kick {
            room: room(r)?,
            name: user(n)?,
        },
        ("promote", [r, n]) => Command::Promote {
            room: room(r)?,
            name: user(n)?,
        },
        ("mute", [t]) => Command::Mute { target: target(t)? },
        ("unmute", [t]) => Command::Unmute { target: target(t)? },
        ("rename", [n]) => Command::Rename { name: user(n)? },
        ("focus", [t]) => Command::Focus { target: target(t)? },
        ("leave", []) => Command::OnFocus(FocusCommand::Leave),
        ("members", []) => Command::OnFocus(FocusCommand::Members),
        ("end", []) => Command::OnFocus(FocusCommand::End),
        ("chats", []) => Command::Chats,
        ("me", [_, ..]) => Command::Me(text(args)?),
        ("away", []) => Command::Away(None),
        ("away", [_, ..]) => Command::Away(Some(text(args.trim_end())?)),
        ("help", []) => Command::Help(None),
        ("help", [c]) => {
            let c = canonical(c);
            if !COMMANDS.iter().any(|(name, _, _)| *name == c) {
                return Err(ParseError::NoHelp(c));
            }
            Command::Help(Some(c))
        }
        ("quit", []) => Command::Quit(None),
        ("quit", [_, ..]) => Command::Quit(Some(text(args.trim_end())?)),
        _ if COMMANDS.iter().any(|(name, _, _)| *name == cmd) => {
            return Err(ParseError::Usage(usage))
        }
        _ => return Err(ParseError::Unknown(word.to_string())),
    };
    Ok(Some(command))
}

/// Splits off the first word; the rest keeps its inner spacing but loses leading blanks.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

fn valid(name: &str, what: &'static str, code: u16) -> Result<String, ParseError> {
    if names::is_valid_name(name) {
        Ok(name.to_string())
    } else {
        // The registry's wording, "invalid username: use 1-32 characters of ...": keep the rule.
        let message = status::message(code);
        let rule = message.split_once(": ").map_or(message, |(_, rule)| rule);
        Err(ParseError::InvalidName {
            what,
            name: name.to_string(),
            rule,
        })
    }
}

fn text(s: &str) -> Result<String, ParseError> {
    if s.len() > names::MAX_TEXT {
        return Err(ParseError::TextTooLong);
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse(line).unwrap().unwrap()
    }

    fn err(line: &str) -> String {
        parse(line).unwrap_err().to_string()
    }

    fn pw(s: &str) -> Option<Password> {
        Some(Password(s.into()))
    }

    #[test]
    fn account_commands() {
        assert_eq!(
            ok("/register alice secret123"),
            Command::Register {
                name: "alice".into(),
                password: pw("secret123")
            }
        );
        assert_eq!(
            ok("/register alice"),
            Command::Register {
                name: "alice".into(),
                password: None
            }
        );
        assert_eq!(
            ok("/login alice secret123\r\n"),
            Command::Login {
                name: "alice".into(),
                password: pw("secret123")
            }
        );
        assert_eq!(
            ok("/login alice"),
            Command::Login {
                name: "alice".into(),
                password: None
            }
        );
        assert_eq!(ok("/logout"), Command::Logout);
        assert_eq!(ok("/users"), Command::Users);
        assert_eq!(ok("/search bob"), Command::Search { name: "bob".into() });
        assert_eq!(
            ok("/rename bobby"),
            Command::Rename {
                name: "bobby".into()
            }
        );
        assert_eq!(ok("/help"), Command::Help(None));
        assert_eq!(ok("/help msg"), Command::Help(Some("msg".into())));
        assert_eq!(ok("/help /part"), Command::Help(Some("leave".into())));
        assert_eq!(err("/help nothing"), "no command /nothing (try /help)");
        assert_eq!(ok("/quit"), Command::Quit(None));
        assert_eq!(
            ok("/QUIT"),
            Command::Quit(None),
            "command words ignore case"
        );
        assert_eq!(ok("/quit bye all "), Command::Quit(Some("bye all".into())));
        assert_eq!(
            ok("/login alice two words "),
            Command::Login {
                name: "alice".into(),
                password: pw("two words")
            },
            "a password may contain spaces"
        );
    }

    #[test]
    fn chat_commands() {
        assert_eq!(ok("/chat bob"), Command::Chat { name: "bob".into() });
        assert_eq!(ok("/accept bob"), Command::Accept { name: "bob".into() });
        assert_eq!(ok("/reject bob"), Command::Reject { name: "bob".into() });
        assert_eq!(ok("/end bob"), Command::End { name: "bob".into() });
        assert_eq!(
            ok("/msg bob  hello   there "),
            Command::Msg {
                name: "bob".into(),
                text: "hello   there ".into()
            }
        );
        assert_eq!(
            ok("/focus bob"),
            Command::Focus {
                target: "bob".into()
            }
        );
        assert_eq!(
            ok("/mute bob"),
            Command::Mute {
                target: "bob".into()
            }
        );
        assert_eq!(
            ok("/unmute lobby"),
            Command::Unmute {
                target: "lobby".into()
            }
        );
    }

    #[test]
    fn room_commands() {
        assert_eq!(ok("/rooms"), Command::Rooms);
        assert_eq!(
            ok("/create lobby"),
            Command::Create {
                room: "lobby".into()
            }
        );
        assert_eq!(
            ok("/join lobby"),
            Command::Join {
                room: "lobby".into()
            }
        );
        assert_eq!(
            ok("/leave lobby"),
            Command::Leave {
                room: "lobby".into()
            }
        );
        assert_eq!(
            ok("/members lobby"),
            Command::Members {
                room: "lobby".into()
            }
        );
        assert_eq!(
            ok("/say lobby hi all"),
            Command::Say {
                room: "lobby".into(),
                text: "hi all".into()
            }
        );
        assert_eq!(
            ok("/kick lobby bob"),
            Command::Kick {
                room: "lobby".into(),
                name: "bob".into()
            }
        );
        assert_eq!(
            ok("/promote lobby bob"),
            Command::Promote {
                room: "lobby".into(),
                name: "bob".into()
            }
        );
    }

    #[test]
    fn plain_text_and_blank_lines() {
        assert_eq!(ok("hello *world*"), Command::Text("hello *world*".into()));
        assert_eq!(ok("  indented"), Command::Text("  indented".into()));
        assert_eq!(
            ok("//not a command"),
            Command::Text("/not a command".into())
        );
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("   \r\n").unwrap(), None);
    }

    #[test]
    fn wrong_arity_gives_the_usage() {
        assert_eq!(err("/msg bob"), "usage: /msg NAME TEXT");
        assert_eq!(err("/msg"), "usage: /msg NAME TEXT");
        assert_eq!(err("/chat"), "usage: /chat NAME");
        assert_eq!(err("/chat a b"), "usage: /chat NAME");
        assert_eq!(err("/login"), "usage: /login NAME PASSWORD");
        assert_eq!(err("/logout now"), "usage: /logout");
        assert_eq!(err("/kick lobby"), "usage: /kick ROOM NAME");
        assert_eq!(err("/say lobby"), "usage: /say ROOM TEXT");
        for (name, usage, _) in COMMANDS {
            if *name == "help" {
                continue;
            }
            let line = format!("/{name} a b c d e");
            let got = parse(&line);
            if let Err(e) = got {
                assert_eq!(e, ParseError::Usage(usage));
            }
        }
    }

    #[test]
    fn unknown_commands_and_bad_names() {
        assert_eq!(err("/foo"), "unknown command /foo (try /help)");
        assert_eq!(err("/foo bar"), "unknown command /foo (try /help)");
        assert_eq!(err("/"), "unknown command / (try /help)");
        assert_eq!(
            err("/chat b@d"),
            "invalid username b@d: use 1-32 characters of A-Z a-z 0-9 _ . -"
        );
        assert!(err("/register émile pass1234").starts_with("invalid username émile: use 1-32"));
        assert!(err("/join r#1").starts_with("invalid room name r#1: "));
        assert_eq!(
            err(&format!("/msg bob {}", "x".repeat(names::MAX_TEXT + 1))),
            "message too long (at most 4096 bytes)"
        );
        assert!(parse(&format!("/msg bob {}", "x".repeat(names::MAX_TEXT))).is_ok());
    }

    #[test]
    fn irc_aliases() {
        let pairs = [
            ("/part lab", "/leave lab"),
            ("/j lab", "/join lab"),
            ("/names lab", "/members lab"),
            ("/whois bob", "/search bob"),
            ("/query bob", "/chat bob"),
            ("/nick bobby", "/rename bobby"),
            ("/list", "/rooms"),
            ("/close bob", "/end bob"),
            ("/windows", "/chats"),
        ];
        for (alias, full) in pairs {
            assert_eq!(ok(alias), ok(full), "{alias}");
        }
        assert_eq!(ok("/me waves  at you"), Command::Me("waves  at you".into()));
        assert_eq!(err("/me"), "usage: /me TEXT");
        assert_eq!(ok("/away"), Command::Away(None));
        assert_eq!(ok("/away at lunch"), Command::Away(Some("at lunch".into())));
        assert_eq!(
            ok("/mute #lab"),
            Command::Mute {
                target: "#lab".into()
            }
        );
        assert_eq!(ok("/part"), Command::OnFocus(FocusCommand::Leave));
        assert_eq!(ok("/names"), Command::OnFocus(FocusCommand::Members));
        assert_eq!(ok("/close"), Command::OnFocus(FocusCommand::End));
        assert_eq!(err("/part a b"), "usage: /leave [ROOM]");
    }

    #[test]
    fn passwords_are_not_in_debug_output() {
        let c = ok("/login alice hunter22");
        assert!(!format!("{c:?}").contains("hunter22"));
    }
}
