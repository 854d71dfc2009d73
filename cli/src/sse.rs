//! An incremental Server-Sent Events parser (the WHATWG event-stream
//! format): bytes in, messages out, whatever the chunking.

/// One item of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A message (dispatched at a blank line).
    Message {
        id: Option<String>,
        event: String,
        data: String,
    },
    /// `retry:` reconnection time, in milliseconds.
    Retry(u64),
    /// A `:` comment (keep-alive).
    Comment,
}

/// Longest line kept; a longer one is cut (the API's lines are far shorter).
const MAX_LINE: usize = 1 << 20;

/// Parser state between chunks.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    id: Option<String>,
    event: String,
    data: Option<String>,
    skip_lf: bool,
}

impl Parser {
    /// Feeds bytes; returns the items they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Item> {
        let mut items = Vec::new();
        for &b in bytes {
            if self.skip_lf {
                self.skip_lf = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.skip_lf = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&String::from_utf8_lossy(&line), &mut items);
                }
                _ if self.line.len() < MAX_LINE => self.line.push(b),
                _ => {}
            }
        }
        items
    }

    fn line_done(&mut self, line: &str, items: &mut Vec<Item>) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                items.push(Item::Message {
                    id: self.id.take(),
                    event: std::mem::take(&mut self.event),
                    data,
                });
            } else {
                self.id = None;
                self.event.clear();
            }
            return;
        }
        if line.starts_with(':') {
            items.push(Item::Comment);
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "event" => value.clone_into(&mut self.event),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "retry" => {
                if let Ok(ms) = value.parse() {
                    items.push(Item::Retry(ms));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_any_chunking() {
        let stream = b"retry: 1000\n\n: keep-alive\n\nid: 1\nevent: completed\ndata: {\"a\":1}\n\nid: 2\r\nevent: reset\r\ndata: 5\r\ndata: 6\r\n\r\nevent: x\n\n";
        let expected = vec![
            Item::Retry(1000),
            Item::Comment,
            Item::Message {
                id: Some("1".into()),
                event: "completed".into(),
                data: "{\"a\":1}".into(),
            },
            Item::Message {
                id: Some("2".into()),
                event: "reset".into(),
                data: "5\n6".into(),
            },
        ];
        for chunk in [1, 2, 3, 7, stream.len()] {
            let mut p = Parser::default();
            let items: Vec<Item> = stream.chunks(chunk).flat_map(|c| p.feed(c)).collect();
            assert_eq!(items, expected, "chunk size {chunk}");
        }
        let mut p = Parser::default();
        assert_eq!(
            p.feed(b"data\nid\n\nretry: x\n"),
            vec![Item::Message {
                id: Some(String::new()),
                event: String::new(),
                data: String::new()
            }]
        );
    }
}
