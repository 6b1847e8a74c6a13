//! YAML events from libyaml (the Rust translation serde_norway is built on), with each scalar's style.
//!
//! Why libyaml: it is the parser cfn-lint's decoder uses (PyYAML's C loader) and, like CloudFormation's, it is
//! lenient where real templates are (a quoted description continued at the key's indentation, which yaml-rust2
//! refuses). serde_norway keeps its event parser private and drops the one fact `template::yaml` needs: whether a
//! scalar was written plain (then YAML 1.1 resolves `yes` to a boolean) or quoted (always text).
//!
//! The only `unsafe` code of the crate is here: a parser owned by a `Box` (libyaml keeps pointers into it and to
//! the input, which the borrow keeps alive), one event at a time, each copied out and freed before the next.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::raw::c_char;
use std::slice;

use unsafe_libyaml_norway as unsafe_libyaml;

/// Where an event starts, 1-based.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub line: u64,
    pub column: u64,
}

#[derive(Debug)]
pub enum Event {
    DocumentStart,
    StreamEnd,
    Alias(Vec<u8>),
    Scalar {
        value: String,
        /// Written without quotes and not as a block (`|`, `>`): YAML resolves its type.
        plain: bool,
        anchor: Option<Vec<u8>>,
        /// The resolved tag (`!Ref`, `tag:yaml.org,2002:str`, `!` alone).
        tag: Option<String>,
    },
    SequenceStart {
        anchor: Option<Vec<u8>>,
        tag: Option<String>,
    },
    MappingStart {
        anchor: Option<Vec<u8>>,
        tag: Option<String>,
    },
    SequenceEnd,
    MappingEnd,
    /// Stream start, document end: nothing to build.
    Other,
}

pub struct Parser<'input> {
    parser: Box<MaybeUninit<unsafe_libyaml::yaml_parser_t>>,
    /// libyaml reads the input through a raw pointer: the borrow keeps it alive as long as the parser.
    _input: &'input [u8],
    failed: bool,
}

impl<'input> Parser<'input> {
    pub fn new(input: &'input str) -> Parser<'input> {
        let mut parser = Box::new(MaybeUninit::<unsafe_libyaml::yaml_parser_t>::uninit());
        let bytes = input.as_bytes();
        // SAFETY: the parser is initialised in place before any other use, and its input outlives it (the
        // lifetime ties them); the Box never moves the parser's memory.
        unsafe {
            let p = parser.as_mut_ptr();
            if unsafe_libyaml::yaml_parser_initialize(p).fail {
                panic!("libyaml could not allocate its parser");
            }
            unsafe_libyaml::yaml_parser_set_encoding(p, unsafe_libyaml::YAML_UTF8_ENCODING);
            unsafe_libyaml::yaml_parser_set_input_string(p, bytes.as_ptr(), bytes.len() as u64);
        }
        Parser {
            parser,
            _input: bytes,
            failed: false,
        }
    }

    /// The next event and where it starts, or libyaml's syntax error with its position.
    pub fn next(&mut self) -> Result<(Event, Mark), String> {
        if self.failed {
            return Err("the YAML parser already failed".into());
        }
        let mut event = MaybeUninit::<unsafe_libyaml::yaml_event_t>::uninit();
        // SAFETY: the parser was initialised in `new`; a parsed event is read, copied and deleted here, never kept.
        unsafe {
            let p = self.parser.as_mut_ptr();
            if unsafe_libyaml::yaml_parser_parse(p, event.as_mut_ptr()).fail {
                self.failed = true;
                return Err(parse_error(&*p));
            }
            let e = &*event.as_ptr();
            let mark = Mark {
                line: e.start_mark.line + 1,
                column: e.start_mark.column + 1,
            };
            let out = convert(e);
            unsafe_libyaml::yaml_event_delete(event.as_mut_ptr());
            Ok((out, mark))
        }
    }
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, deleted once.
        unsafe { unsafe_libyaml::yaml_parser_delete(self.parser.as_mut_ptr()) }
    }
}

unsafe fn text(ptr: *const u8) -> Option<Vec<u8>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: libyaml's anchors and tags are NUL-terminated strings owned by the live event.
    Some(
        unsafe { CStr::from_ptr(ptr as *const c_char) }
            .to_bytes()
            .to_vec(),
    )
}

unsafe fn tag(ptr: *const u8) -> Option<String> {
    unsafe { text(ptr) }.map(|t| String::from_utf8_lossy(&t).into_owned())
}

unsafe fn convert(e: &unsafe_libyaml::yaml_event_t) -> Event {
    // SAFETY: each union field is read only for the event type that defines it.
    unsafe {
        match e.type_ {
            unsafe_libyaml::YAML_DOCUMENT_START_EVENT => Event::DocumentStart,
            unsafe_libyaml::YAML_STREAM_END_EVENT => Event::StreamEnd,
            unsafe_libyaml::YAML_ALIAS_EVENT => {
                Event::Alias(text(e.data.alias.anchor).unwrap_or_default())
            }
            unsafe_libyaml::YAML_SCALAR_EVENT => {
                let s = &e.data.scalar;
                let bytes = slice::from_raw_parts(s.value, s.length as usize);
                Event::Scalar {
                    value: String::from_utf8_lossy(bytes).into_owned(),
                    plain: s.style == unsafe_libyaml::YAML_PLAIN_SCALAR_STYLE,
                    anchor: text(s.anchor),
                    tag: tag(s.tag),
                }
            }
            unsafe_libyaml::YAML_SEQUENCE_START_EVENT => Event::SequenceStart {
                anchor: text(e.data.sequence_start.anchor),
                tag: tag(e.data.sequence_start.tag),
            },
            unsafe_libyaml::YAML_MAPPING_START_EVENT => Event::MappingStart {
                anchor: text(e.data.mapping_start.anchor),
                tag: tag(e.data.mapping_start.tag),
            },
            unsafe_libyaml::YAML_SEQUENCE_END_EVENT => Event::SequenceEnd,
            unsafe_libyaml::YAML_MAPPING_END_EVENT => Event::MappingEnd,
            _ => Event::Other,
        }
    }
}

/// libyaml's problem, context and position, in one line.
fn parse_error(p: &unsafe_libyaml::yaml_parser_t) -> String {
    // SAFETY: libyaml's problem and context are static NUL-terminated strings or null.
    let words = |ptr: *const c_char| unsafe {
        if ptr.is_null() {
            String::new()
        } else {
            CStr::from_ptr(ptr).to_string_lossy().into_owned()
        }
    };
    let problem = words(p.problem);
    let context = words(p.context);
    let mark = p.problem_mark;
    let mut out = format!("not JSON or YAML: {problem}");
    if !context.is_empty() {
        out.push_str(&format!(" ({context})"));
    }
    out.push_str(&format!(
        " at line {}, column {}",
        mark.line + 1,
        mark.column + 1
    ));
    out
}
