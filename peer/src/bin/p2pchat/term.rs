//! The terminal side of `p2pchat`: a thread that reads the user's lines (rustyline on a
//! terminal, plain lines otherwise) and hands them to the reactor thread, and the printer that
//! shows events above the line being typed.

use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread;

use log::{debug, warn};
use p2pchat_engine::Waker;
use p2pchat_peer::command::{self, Command, ParseError, Password};
use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};

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
pub(crate) fn spawn_editor(mut rl: DefaultEditor, tx: Sender<UiInput>, waker: Arc<Waker>) {
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
                match read_password("Password: ") {
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

/// Reads one line from the terminal with echo off.
fn read_password(prompt: &str) -> io::Result<String> {
    let mut out = io::stdout();
    write!(out, "{prompt}")?;
    out.flush()?;
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data, filled by tcgetattr before use.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut term) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let saved = term;
    term.c_lflag &= !libc::ECHO;
    term.c_lflag |= libc::ECHONL;
    // SAFETY: a valid termios for the same descriptor.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &term) };
    let mut line = String::new();
    let read = io::stdin().lock().read_line(&mut line);
    // SAFETY: the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
