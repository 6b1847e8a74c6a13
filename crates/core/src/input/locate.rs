//! The first pass over a desired-state file: yaml-rust2's event parser with markers. It learns where every field is
//! (so every problem can name a line and column, which serde's typed values cannot), finds the document boundaries,
//! and refuses input that would be expensive to deserialize (deep nesting, alias bombs) before serde sees it.
//!
//! The events are pulled one at a time (`Parser::next_token`) and fed to a `MarkedEventReceiver`, rather than
//! through `Parser::load`: `load` recurses once per nesting level and asserts on its input, so a hostile file
//! could overflow the stack or panic before any limit is checked.
//!
//! serde_norway guards itself too (recursion depth 128; alias jumps at most 100 times the document's events), but
//! only after loading the whole document, and its messages ("repetition limit exceeded") do not say what to fix.

use std::collections::{HashMap, HashSet};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deeper than any real desired state (the deepest field is at level 4); refusing early keeps every later pass,
/// including serde's recursive one, far from its own limits.
pub const MAX_DEPTH: usize = 64;

/// The most nodes one document may expand to when aliases are followed. A real file has a few hundred; an alias
/// bomb ("billion laughs") has billions. Counted with saturating arithmetic, so the check costs one pass over the
/// events, not the expansion.
pub const MAX_EXPANDED_NODES: u64 = 100_000;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_marker(mark: Marker) -> Self {
        // yaml-rust2's lines are 1-based, its columns 0-based.
        Pos {
            line: mark.line(),
            column: mark.col() + 1,
        }
    }
}

/// Where one field is: its key (absent for list items and the document root) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spot {
    pub key: Option<Pos>,
    pub value: Pos,
    /// The value is a plain (unquoted) scalar that YAML reads as a number.
    pub numeric: bool,
}

impl Spot {
    /// The key when there is one: where an operator looks for a field.
    pub fn key_or_value(&self) -> Pos {
        self.key.unwrap_or(self.value)
    }
}

/// A problem found by this pass, before field paths are known to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub pos: Pos,
    pub field: String,
    pub message: String,
}

/// One YAML document of the stream.
#[derive(Debug, Default)]
pub struct DocLayout {
    /// Field path -> where it is. Paths are dotted; list items are `name[i]`; the root is "".
    pub spots: HashMap<String, Spot>,
    /// Keys of each mapping, in file order, by the mapping's path.
    pub keys: HashMap<String, Vec<String>>,
    /// The root is a null scalar (`---` followed by nothing): the document is ignored.
    pub empty: bool,
    /// A problem in this document stops it from being deserialized (syntax, limits).
    pub broken: bool,
    /// How many keys repeat a key of their mapping (reported by this pass).
    pub duplicates: usize,
}

impl DocLayout {
    pub fn spot(&self, path: &str) -> Option<&Spot> {
        self.spots.get(path)
    }

    /// The position of a field, or of its nearest ancestor that exists (a missing field is reported at its parent).
    pub fn pos_of(&self, path: &str) -> Pos {
        let mut path = path;
        loop {
            if let Some(spot) = self.spots.get(path) {
                return spot.key_or_value();
            }
            match parent_of(path) {
                Some(parent) => path = parent,
                None => return Pos::default(),
            }
        }
    }

    /// The position of a field's value (e.g. the bad text itself), falling back like `pos_of`.
    pub fn value_pos_of(&self, path: &str) -> Pos {
        match self.spots.get(path) {
            Some(spot) => spot.value,
            None => self.pos_of(path),
        }
    }

    /// The field whose key or value starts at `pos`, preferring the longest (innermost) path.
    pub fn path_at(&self, pos: Pos) -> Option<&str> {
        self.spots
            .iter()
            .filter(|(_, s)| s.key == Some(pos) || s.value == pos)
            .map(|(p, _)| p.as_str())
            .max_by_key(|p| (p.len(), *p))
    }
}

/// The result of the pass: the documents and any problems that stop deserialization.
#[derive(Debug, Default)]
pub struct Layout {
    pub docs: Vec<DocLayout>,
    pub findings: Vec<(usize, Finding)>,
}

/// `a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> ``, `` -> None.
pub fn parent_of(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']') {
        if let Some(i) = path.rfind('[') {
            return Some(&path[..i]);
        }
    }
    Some(path.rfind('.').map_or("", |i| &path[..i]))
}

pub fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

enum Frame {
    Mapping {
        path: String,
        /// The pending key and where it is; None while a key is expected.
        key: Option<(String, Pos)>,
        seen: HashSet<String>,
        /// Expanded-node counter when this collection started, and its anchor, for alias weights.
        start: u64,
        anchor: usize,
    },
    Sequence {
        path: String,
        next: usize,
        start: u64,
        anchor: usize,
    },
    /// A collection used as a mapping key: tracked only for depth and weight, never for paths.
    ComplexKey { start: u64, anchor: usize },
}

/// Builds the layout from marked events.
struct Receiver {
    layout: Layout,
    stack: Vec<Frame>,
    /// Expanded-node count of the current document.
    expanded: u64,
    /// Anchor id -> expanded weight of the anchored node.
    weights: HashMap<usize, u64>,
    /// Set once a limit is exceeded: stop reading.
    stop: bool,
    /// Between a DocumentStart and its DocumentEnd.
    open: bool,
}

impl Receiver {
    fn doc_index(&self) -> usize {
        self.layout.docs.len().saturating_sub(1)
    }

    fn finding(&mut self, pos: Pos, field: String, message: String) {
        let index = self.doc_index();
        if let Some(doc) = self.layout.docs.last_mut() {
            doc.broken = true;
        }
        self.layout.findings.push((
            index,
            Finding {
                pos,
                field,
                message,
            },
        ));
    }

    /// Where the next value node goes: its path and key position, advancing the parent. Returns None when the
    /// node is a mapping key (then it has no path of its own).
    fn place_value(
        &mut self,
        pos: Pos,
        is_scalar_key: Option<&str>,
    ) -> Option<(String, Option<Pos>)> {
        match self.stack.last_mut() {
            None => Some((String::new(), None)),
            Some(Frame::Sequence { path, next, .. }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some((p, None))
            }
            Some(Frame::Mapping { key, .. }) if key.is_none() => {
                // This node is a key.
                let name = is_scalar_key.unwrap_or("?").to_string();
                *key = Some((name, pos));
                None
            }
            Some(Frame::Mapping { path, key, .. }) => {
                let (name, key_pos) = key.take().unwrap_or_default();
                Some((child_path(path, &name), Some(key_pos)))
            }
            Some(Frame::ComplexKey { .. }) => None,
        }
    }

    /// A key was just completed as a scalar: check for duplicates.
    fn check_duplicate_key(&mut self) {
        let dup = match self.stack.last_mut() {
            Some(Frame::Mapping {
                path,
                key: Some((name, pos)),
                seen,
                ..
            }) => {
                if seen.insert(name.clone()) {
                    None
                } else {
                    Some((*pos, child_path(path, name)))
                }
            }
            _ => None,
        };
        if let Some((pos, field)) = dup {
            // Not fatal to the document: serde keeps one of the two, the operator must pick.
            let index = self.doc_index();
            if let Some(doc) = self.layout.docs.last_mut() {
                doc.duplicates += 1;
            }
            self.layout.findings.push((
                index,
                Finding {
                    pos,
                    field,
                    message: "this key appears twice in the same mapping; keep one".to_string(),
                },
            ));
        }
    }

    fn record(&mut self, path: String, key: Option<Pos>, value: Pos, numeric: bool) {
        if let Some(doc) = self.layout.docs.last_mut() {
            if let Some(parent) = parent_of(&path) {
                if key.is_some() {
                    let name = path[parent.len()..].trim_start_matches('.').to_string();
                    doc.keys.entry(parent.to_string()).or_default().push(name);
                }
            }
            doc.spots.insert(
                path,
                Spot {
                    key,
                    value,
                    numeric,
                },
            );
        }
    }

    fn add_weight(&mut self, weight: u64, pos: Pos) {
        self.expanded = self.expanded.saturating_add(weight);
        if self.expanded > MAX_EXPANDED_NODES {
            self.finding(
                pos,
                String::new(),
                format!(
                    "aliases expand this document to more than {MAX_EXPANDED_NODES} nodes; refusing it (an \
                     alias bomb?). Write the values out or use fewer nested aliases"
                ),
            );
            self.stop = true;
        }
    }

    fn push(&mut self, pos: Pos, mapping: bool, anchor: usize) {
        let start = self.expanded;
        self.add_weight(1, pos);
        let placed = self.place_value(pos, None);
        let frame = match placed {
            Some((path, key)) => {
                self.record(path.clone(), key, pos, false);
                if mapping {
                    Frame::Mapping {
                        path,
                        key: None,
                        seen: HashSet::new(),
                        start,
                        anchor,
                    }
                } else {
                    Frame::Sequence {
                        path,
                        next: 0,
                        start,
                        anchor,
                    }
                }
            }
            None => Frame::ComplexKey { start, anchor },
        };
        self.stack.push(frame);
        if self.stack.len() > MAX_DEPTH {
            self.finding(
                pos,
                String::new(),
                format!(
                    "nesting is deeper than {MAX_DEPTH} levels; a desired-state file needs 4. Flatten it"
                ),
            );
            self.stop = true;
        }
    }

    fn pop(&mut self) {
        let (start, anchor) = match self.stack.pop() {
            Some(Frame::Mapping { start, anchor, .. })
            | Some(Frame::Sequence { start, anchor, .. })
            | Some(Frame::ComplexKey { start, anchor }) => (start, anchor),
            None => return,
        };
        if anchor != 0 {
            self.weights
                .insert(anchor, self.expanded.saturating_sub(start));
        }
    }
}

/// Would YAML (1.1 or 1.2 core schema) read this plain scalar as a number?
fn looks_numeric(text: &str) -> bool {
    let t = text.strip_prefix(['+', '-']).unwrap_or(text);
    if t.is_empty() {
        return false;
    }
    let t = t.replace('_', "");
    t.parse::<f64>().is_ok()
        || t.starts_with("0x") && t.len() > 2 && t[2..].chars().all(|c| c.is_ascii_hexdigit())
        || t.starts_with("0o") && t.len() > 2 && t[2..].chars().all(|c| c.is_digit(8))
}

impl MarkedEventReceiver for Receiver {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from_marker(mark);
        match ev {
            Event::DocumentStart => {
                self.layout.docs.push(DocLayout::default());
                self.stack.clear();
                self.expanded = 0;
                self.open = true;
            }
            Event::DocumentEnd => self.open = false,
            Event::Scalar(text, style, anchor, _tag) => {
                let start = self.expanded;
                self.add_weight(1, pos);
                let is_key = matches!(self.stack.last(), Some(Frame::Mapping { key: None, .. }));
                if is_key {
                    self.place_value(pos, Some(&text));
                    self.check_duplicate_key();
                } else if let Some((path, key)) = self.place_value(pos, None) {
                    let plain = style == TScalarStyle::Plain;
                    if path.is_empty()
                        && plain
                        && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
                    {
                        if let Some(doc) = self.layout.docs.last_mut() {
                            doc.empty = true;
                        }
                    }
                    self.record(path, key, pos, plain && looks_numeric(&text));
                }
                if anchor != 0 {
                    self.weights.insert(anchor, self.expanded - start);
                }
            }
            Event::Alias(anchor) => {
                let weight = self.weights.get(&anchor).copied().unwrap_or(1);
                self.add_weight(weight, pos);
                let is_key = matches!(self.stack.last(), Some(Frame::Mapping { key: None, .. }));
                if is_key {
                    self.place_value(pos, Some("*alias"));
                } else if let Some((path, key)) = self.place_value(pos, None) {
                    self.record(path, key, pos, false);
                }
            }
            Event::MappingStart(anchor, _) => self.push(pos, true, anchor),
            Event::SequenceStart(anchor, _) => self.push(pos, false, anchor),
            Event::MappingEnd | Event::SequenceEnd => self.pop(),
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
    }
}

/// YAML notices a key without its `:` only on the next line (or at the end of the file): the line an operator
/// must fix is the last one with content before the error, when it has no `:` outside quotes and is no list item.
/// Returns where that line's text starts and the text (without its comment).
fn missing_colon(text: &str, error: Pos) -> Option<(Pos, &str)> {
    let lines: Vec<&str> = text.lines().collect();
    let last = error.line.saturating_sub(1).min(lines.len());
    let (index, line) = lines[..last]
        .iter()
        .enumerate()
        .rev()
        .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))?;
    let content = line.split(" #").next().unwrap_or(line).trim_end();
    let body = content.trim_start();
    let plain = !body.starts_with(['-', '"', '\'', '|', '>', '{', '[', '&', '*', '!', '%', '?']);
    let first = body.split_whitespace().next()?;
    let has_colon = body.contains(": ") || body.ends_with(':');
    let key_like = first
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    (plain && !has_colon && key_like && body.contains(char::is_whitespace)).then(|| {
        let column = content.len() - body.len() + 1;
        (
            Pos {
                line: index + 1,
                column,
            },
            body,
        )
    })
}

/// `regions [us-west-2]` -> `regions: [us-west-2]`.
fn with_colon(line: &str) -> String {
    match line.split_once(char::is_whitespace) {
        Some((key, rest)) => format!("{key}: {}", rest.trim_start()),
        None => format!("{line}:"),
    }
}

/// Read the event stream of `text`, stopping at the first syntax error or exceeded limit.
pub fn layout(text: &str) -> Layout {
    let mut parser = Parser::new_from_str(text);
    let mut receiver = Receiver {
        layout: Layout::default(),
        stack: Vec::new(),
        expanded: 0,
        weights: HashMap::new(),
        stop: false,
        open: false,
    };
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => break,
            Ok((ev, mark)) => {
                receiver.on_event(ev, mark);
                if receiver.stop {
                    break;
                }
            }
            Err(e) => {
                // A syntax error between documents belongs to the next one, as it does for serde.
                if !receiver.open {
                    receiver.layout.docs.push(DocLayout::default());
                }
                let pos = Pos::from_marker(*e.marker());
                // The scanner refuses deep flow nesting ([[[[...) before the parser's events reach the depth
                // check: say the same as that check.
                let message = if e.info().contains("recursion limit") {
                    format!(
                        "nesting is deeper than {MAX_DEPTH} levels; a desired-state file needs 4. Flatten it"
                    )
                } else {
                    format!("YAML syntax error: {}", e.info())
                };
                let (pos, message) = missing_colon(text, pos)
                    .map(|(at, line)| {
                        (
                            at,
                            format!(
                                "`{line}` has no `:` after its key: write `{}` ({message})",
                                with_colon(line)
                            ),
                        )
                    })
                    .unwrap_or((pos, message));
                receiver.finding(pos, String::new(), message);
                break;
            }
        }
    }
    receiver.layout
}
