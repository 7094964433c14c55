//! The terminal side of `p2pchat`: a thread that reads the user's lines (rustyline on a
//! terminal, plain lines otherwise) and hands them to the reactor thread, and the printer that
//! shows events above the line being typed.

use std::borrow::Cow;
use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread;

use log::{debug, warn};
use p2pchat_engine::Waker;
use p2pchat_peer::command::{self, Command, ParseError, Password};
use rustyline::completion::Completer;
use rustyline::config::Configurer;
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{ColorMode, Editor, ExternalPrinter, Helper};

/// The line editor: rustyline with a helper that can hide what is typed (for passwords).
pub(crate) type LineEditor = Editor<Masking, DefaultHistory>;

/// Hides the line while `on` (the password prompt), shows it otherwise.
pub(crate) struct Masking {
    on: bool,
}

impl Highlighter for Masking {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.on {
            // Blanks of the same width keep rustyline's cursor arithmetic right.
            Cow::Owned(" ".repeat(line.chars().count()))
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        // Redraw on every keystroke while masking, so no typed character is ever shown.
        self.on && kind != CmdKind::MoveCursor
    }
}

impl Completer for Masking {
    type Candidate = String;
}

impl Hinter for Masking {
    type Hint = String;
}

impl Validator for Masking {}

impl Helper for Masking {}

/// A line editor with the masking helper installed.
pub(crate) fn editor() -> rustyline::Result<LineEditor> {
    let mut rl = LineEditor::new()?;
    rl.set_helper(Some(Masking { on: false }));
    // Masking works through the highlighter, which rustyline only runs with colour enabled;
    // the helper adds no colour of its own, so NO_COLOR is still honoured for our output.
    rl.set_color_mode(ColorMode::Forced);
    Ok(rl)
}

/// What the input thread hands to the reactor thread.
pub(crate) enum UiInput {
    /// One line, parsed (a blank line is `Ok(None)`).
    Line(Result<Option<Command>, ParseError>),
    /// No more input (end of file, Ctrl-D, Ctrl-C in the line editor).
    Eof,
}

/// Where events are printed.
pub(crate) enum Printer {
    /// Plain stdout, one line at a time, flushed per line.
    Stdout,
    /// Above rustyline's prompt.
    External(Box<dyn ExternalPrinter>),
}

impl Printer {
    /// Prints `text` (one or more lines).
    pub(crate) fn print(&mut self, text: &str) {
        match self {
            Printer::Stdout => {
                let mut out = io::stdout().lock();
                // A closed stdout is not a reason to stop chatting; the next line will fail too.
                let _ = writeln!(out, "{text}").and_then(|()| out.flush());
            }
            Printer::External(p) => {
                if let Err(e) = p.print(format!("{text}\n")) {
                    debug!("external printer failed ({e}); printing directly");
                    println!("{text}");
                }
            }
        }
    }
}

/// The terminal's settings at start, put back at exit: the process may end while the line
/// editor has the terminal in raw mode (after a signal, say).
pub(crate) struct TermGuard {
    saved: Option<libc::termios>,
}

impl TermGuard {
    pub(crate) fn save() -> TermGuard {
        if !io::stdin().is_terminal() {
            return TermGuard { saved: None };
        }
        // SAFETY: termios is plain data; tcgetattr fills it or fails without touching memory
        // beyond it.
        let mut term: libc::termios = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut term) } == 0;
        TermGuard {
            saved: ok.then_some(term),
        }
    }
}

impl Drop for TermGuard {
    fn drop(&mut self) {
        if let Some(term) = &self.saved {
            // SAFETY: restores settings read from the same descriptor by tcgetattr.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, term) };
        }
    }
}

/// Reads lines from stdin on a thread (line mode): each line is one command.
pub(crate) fn spawn_line_reader(tx: Sender<UiInput>, waker: Arc<Waker>) {
    thread::spawn(move || {
        let stdin = io::stdin();
        for line in stdin.lock().lines() {
            let line = match line {
                Ok(line) => line,
                Err(e) => {
                    warn!("reading stdin: {e}");
                    break;
                }
            };
            if tx.send(UiInput::Line(command::parse(&line))).is_err() {
                return;
            }
            let _ = waker.wake();
        }
        let _ = tx.send(UiInput::Eof);
        let _ = waker.wake();
    });
}

/// Reads lines with rustyline on a thread (interactive mode). `/login NAME` and `/register NAME`
/// prompt for the password without echo. Stops after `/quit`, Ctrl-C or Ctrl-D.
pub(crate) fn spawn_editor(mut rl: LineEditor, tx: Sender<UiInput>, waker: Arc<Waker>) {
    thread::spawn(move || {
        loop {
            let line = match rl.readline("> ") {
                Ok(line) => line,
                Err(ReadlineError::Interrupted | ReadlineError::Eof) => break,
                Err(e) => {
                    warn!("line editor: {e}");
                    break;
                }
            };
            let mut parsed = command::parse(&line);
            let secret = matches!(
                parsed,
                Ok(Some(Command::Login { .. } | Command::Register { .. }))
            );
            // Never keep a password in the history.
            if !secret && matches!(parsed, Ok(Some(_))) {
                let _ = rl.add_history_entry(line.as_str());
            }
            if let Ok(Some(
                Command::Login {
                    password: password @ None,
                    ..
                }
                | Command::Register {
                    password: password @ None,
                    ..
                },
            )) = &mut parsed
            {
                match read_password(&mut rl) {
                    Ok(p) => *password = Some(Password(p)),
                    Err(e) => warn!("reading the password: {e}"),
                }
            }
            let quit = matches!(parsed, Ok(Some(Command::Quit)));
            if tx.send(UiInput::Line(parsed)).is_err() {
                return;
            }
            let _ = waker.wake();
            if quit {
                return;
            }
        }
        let _ = tx.send(UiInput::Eof);
        let _ = waker.wake();
    });
}

/// Reads the password with the same editor, the typed characters hidden. Reading through the
/// editor (and not a second reader on stdin) matters: the editor may already hold bytes typed
/// ahead, and a second buffered reader would steal or lose them.
fn read_password(rl: &mut LineEditor) -> rustyline::Result<String> {
    if let Some(h) = rl.helper_mut() {
        h.on = true;
    }
    let read = rl.readline("Password: ");
    if let Some(h) = rl.helper_mut() {
        h.on = false;
    }
    read
}
