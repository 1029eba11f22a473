use super::*;

/// Messages whose strings hold every character that could fool a brace counter.
const STREAM: &str = concat!(
    r#"{"id":1,"result":[{"rows":[{"name":"a}b{c","x":"[\"]"}]}],"error":null}"#,
    "\n  ",
    r#"{"id":"echo","method":"echo","params":["\\",  "\\\"}", "é{"]}"#,
    r#"{"method":"update","params":[null,{"T":{"u":{"new":{"k":["map",[]]}}}}],"id":null}"#,
);

fn frames_when_split(chunks: &[&[u8]]) -> Vec<serde_json::Value> {
    let mut framer = Framer::default();
    let mut out = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        while let Some(frame) = framer.next_frame().unwrap() {
            out.push(serde_json::from_slice(&frame).unwrap());
        }
    }
    assert!(!framer.has_partial(), "bytes left over");
    out
}

fn expected() -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_str(STREAM)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn cuts_concatenated_messages_with_tricky_strings() {
    let frames = frames_when_split(&[STREAM.as_bytes()]);
    assert_eq!(frames.len(), 3);
    assert_eq!(frames, expected());
    assert_eq!(frames[1]["params"][1], "\\\"}");
}

#[test]
fn gives_the_same_messages_however_the_stream_is_split() {
    let bytes = STREAM.as_bytes();
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        assert_eq!(frames_when_split(&[a, b]), expected(), "split at {at}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(frames_when_split(&singles), expected());
}

#[test]
fn keeps_an_unfinished_message_until_the_rest_arrives() {
    let mut framer = Framer::default();
    framer.push(br#"{"id":7,"result":["a"#);
    assert_eq!(framer.next_frame().unwrap(), None);
    assert!(framer.has_partial());
    framer.push(br#"b"],"error":null}  "#);
    let frame = framer.next_frame().unwrap().unwrap();
    assert_eq!(frame, br#"{"id":7,"result":["ab"],"error":null}"#);
    assert_eq!(framer.next_frame().unwrap(), None);
    assert!(!framer.has_partial());
}

#[test]
fn rejects_bytes_that_cannot_start_a_message() {
    for junk in [&b"HTTP/1.1 400"[..], b"}", b"\"str\"", b"42"] {
        let mut framer = Framer::default();
        framer.push(junk);
        let err = framer.next_frame().unwrap_err();
        assert!(err.starts_with("expected a JSON object"), "{err}");
    }
}
