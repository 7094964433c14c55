//! The terminal side of `p2pchat`: a thread that reads the user's lines (rustyline on a
//! terminal, plain lines otherwise) and hands them to the reactor thread, and the printer that
//! shows events above the line being typed.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use log::{debug, warn};
use p2pchat_engine::Waker;
use p2pchat_peer::command::{self, Command, ParseError, Password, ALIASES, COMMANDS};
use rustyline::completion::Completer;
use rustyline::config::Configurer;
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{
    Cmd, ColorMode, ConditionalEventHandler, Editor, Event, EventContext, EventHandler,
    ExternalPrinter, Helper, KeyEvent, Movement, RepeatCount,
};

/// How long the editor waits, after a line, for the reactor to act on it (and for the
/// registry's answer) before showing the next prompt: the prompt should show the focus that
/// line gave, but typing must never stall for long.
const PROMPT_SETTLE: Duration = Duration::from_secs(3);

/// The line editor: rustyline with a helper that can hide what is typed (for passwords).
pub(crate) type LineEditor = Editor<Masking, DefaultHistory>;

/// Hides the line while `on` (the password prompt), shows it otherwise; completes command,
/// user and room names.
pub(crate) struct Masking {
    on: bool,
    names: Arc<Mutex<BTreeSet<String>>>,
    /// Where the current prompt comes from, and the prompt the current line was started with.
    prompt: Arc<PromptSync>,
    base: String,
}

/// `prompt` shown in exactly `width` columns: rustyline measured the prompt the line started
/// with and places the cursor by that width, so a prompt that changed mid-line (a chat
/// accepted by the other side, a chat ended) must keep it. Prompts are ASCII (names are), so
/// bytes are columns. A longer one loses the end of its label (`[@caro~]> `); a shorter one is
/// padded with blanks.
fn fit_prompt(prompt: &str, width: usize) -> String {
    if prompt.len() == width || !prompt.is_ascii() {
        return prompt.to_string();
    }
    if prompt.len() < width {
        return format!("{prompt:<width$}");
    }
    match prompt.strip_prefix('[').and_then(|p| p.strip_suffix("]> ")) {
        Some(label) if width >= 6 => {
            let keep = width - 5;
            format!("[{}~]> ", &label[..keep.min(label.len())])
        }
        _ => format!("{:<width$}", ">"),
    }
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

    /// The focus may change while a line is typed: the prompt redrawn (after a printed event)
    /// shows the current one, in the width the line started with.
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        if self.on || prompt != self.base {
            return Cow::Borrowed(prompt);
        }
        let now = self.prompt.current();
        if now == prompt {
            return Cow::Borrowed(prompt);
        }
        Cow::Owned(fit_prompt(&now, prompt.len()))
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        // Redraw on every keystroke while masking, so no typed character is ever shown.
        self.on && kind != CmdKind::MoveCursor
    }
}

impl Completer for Masking {
    type Candidate = String;

    /// The word before the cursor: a command (`/jo` -> `/join `) when it is the first word
    /// and starts with `/`, else a user or room name seen so far.
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        if self.on {
            return Ok((pos, Vec::new()));
        }
        let start = line[..pos].rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &line[start..pos];
        if start == 0 && word.starts_with('/') {
            let typed = word[1..].to_ascii_lowercase();
            let mut out: Vec<String> = COMMANDS
                .iter()
                .map(|(name, _, _)| *name)
                .chain(ALIASES.iter().map(|(alias, _)| *alias))
                .filter(|name| name.starts_with(&typed))
                .map(|name| format!("/{name} "))
                .collect();
            out.sort();
            return Ok((0, out));
        }
        let (prefix, bare) = match word.strip_prefix('#') {
            Some(rest) => ("#", rest),
            None => ("", word),
        };
        let lower = bare.to_ascii_lowercase();
        // A poisoned lock only means a printer thread panicked; the names are still usable.
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        let out = names
            .iter()
            .filter(|n| n.to_ascii_lowercase().starts_with(&lower))
            .map(|n| format!("{prefix}{n}"))
            .collect();
        Ok((start, out))
    }
}

/// Ctrl-C clears a half-typed line; on an empty line it quits (as Ctrl-D does).
struct CtrlC;

impl ConditionalEventHandler for CtrlC {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        if ctx.line().is_empty() {
            Some(Cmd::Interrupt)
        } else {
            Some(Cmd::Kill(Movement::WholeLine))
        }
    }
}

/// Where the editor thread learns the prompt, and whether the reactor is done with the lines
/// it was given.
#[derive(Default)]
pub(crate) struct PromptSync {
    state: Mutex<PromptState>,
    changed: Condvar,
}

#[derive(Default)]
struct PromptState {
    prompt: String,
    /// Lines the reactor has acted on (and whose registry answers have arrived).
    settled: u64,
}

impl PromptSync {
    /// The reactor's side: the current prompt, and how many lines are settled.
    pub(crate) fn update(&self, prompt: &str, settled: Option<u64>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.prompt != prompt {
            s.prompt = prompt.to_string();
        }
        if let Some(n) = settled {
            s.settled = s.settled.max(n);
        }
        self.changed.notify_all();
    }

    /// The prompt now.
    fn current(&self) -> String {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.prompt.clone()
    }

    /// The editor's side: waits (at most [`PROMPT_SETTLE`]) until `sent` lines are settled,
    /// then returns the prompt.
    fn wait(&self, sent: u64) -> String {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (s, _) = self
            .changed
            .wait_timeout_while(s, PROMPT_SETTLE, |s| s.settled < sent)
            .unwrap_or_else(|p| p.into_inner());
        s.prompt.clone()
    }
}

/// The history file: `$XDG_DATA_HOME/p2pchat/history`, else `~/.local/share/p2pchat/history`.
fn history_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("share"))
        })?;
    Some(base.join("p2pchat").join("history"))
}

/// Whether a typed line may carry a password: never kept in the history.
fn is_secret(line: &str) -> bool {
    let word = line.split_whitespace().next().unwrap_or("");
    let word = word.to_ascii_lowercase();
    word == "/login" || word == "/register"
}

impl Hinter for Masking {
    type Hint = String;
}

impl Validator for Masking {}

impl Helper for Masking {}

/// A line editor with the masking helper installed, completing from `names`, with the
/// history of earlier runs.
pub(crate) fn editor(
    names: Arc<Mutex<BTreeSet<String>>>,
    prompt: Arc<PromptSync>,
) -> rustyline::Result<LineEditor> {
    let mut rl = LineEditor::new()?;
    rl.set_helper(Some(Masking {
        on: false,
        names,
        prompt,
        base: String::new(),
    }));
    rl.bind_sequence(
        KeyEvent::ctrl('C'),
        EventHandler::Conditional(Box::new(CtrlC)),
    );
    rl.set_auto_add_history(false);
    if let Some(path) = history_path() {
        if let Err(e) = rl.load_history(&path) {
            debug!("no history loaded from {}: {e}", path.display());
        }
    }
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
/// prompt for the password without echo. Stops after `/quit`, Ctrl-C on an empty line or
/// Ctrl-D. The prompt comes from `prompt` (the reactor keeps it current).
pub(crate) fn spawn_editor(
    mut rl: LineEditor,
    tx: Sender<UiInput>,
    waker: Arc<Waker>,
    prompt: Arc<PromptSync>,
) {
    thread::spawn(move || {
        let history = history_path();
        if let Some(dir) = history.as_ref().and_then(|p| p.parent()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut sent = 0u64;
        loop {
            let shown = prompt.wait(sent);
            if let Some(h) = rl.helper_mut() {
                h.base.clone_from(&shown);
            }
            let line = match rl.readline(&shown) {
                Ok(line) => line,
                Err(ReadlineError::Interrupted | ReadlineError::Eof) => break,
                Err(e) => {
                    warn!("line editor: {e}");
                    break;
                }
            };
            let mut parsed = command::parse(&line);
            // Lines that failed to parse are kept too, to be fixed with Up; a line that may
            // hold a password never is.
            if !is_secret(&line) && !line.trim().is_empty() {
                let _ = rl.add_history_entry(line.as_str());
                if let Some(path) = &history {
                    if let Err(e) = rl.append_history(path) {
                        debug!("history not saved to {}: {e}", path.display());
                    }
                }
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
            let quit = matches!(parsed, Ok(Some(Command::Quit(_))));
            if tx.send(UiInput::Line(parsed)).is_err() {
                return;
            }
            sent += 1;
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

#[cfg(test)]
mod tests {
    use super::fit_prompt;

    #[test]
    fn a_changed_prompt_keeps_the_width() {
        assert_eq!(fit_prompt("[lab]> ", 7), "[lab]> ");
        assert_eq!(fit_prompt("> ", 7), ">      ");
        assert_eq!(fit_prompt("[@carol]> ", 7), "[@c~]> ");
        assert_eq!(fit_prompt("[@carol]> ", 2), "> ");
        assert_eq!(fit_prompt("[lab]> ", 2), "> ");
        for width in 2..20 {
            assert_eq!(fit_prompt("[@somebody]> ", width).len(), width);
        }
    }
}
