//! Fuzz target: the `manager` service's request decoder (vm-managerd), which reads what a guest
//! sends, and the reply decoder the guest side uses.
//!
//! Checks: nothing panics; every accepted request obeys the limits (1..=32 distinct valid
//! names, wait seconds 1..=45) and re-encodes to exactly the bytes it came from (decoding is
//! exact: nothing is tolerated that the canonical form does not say); a reply built from the
//! decoded names decodes back to itself, and the same bytes as a reply never panic.

#![no_main]

use libfuzzer_sys::{Corpus, fuzz_target};
use vm_managerd::request::{
    Answer, MAX_NAMES, MAX_WAIT_SECS, decode, decode_reply, valid_name,
};

fuzz_target!(|data: &[u8]| -> Corpus {
    let names_of_reply: Vec<String> = vec!["a".into(), "b".into()];
    let _ = decode_reply(data, &names_of_reply);
    // refusals are kept: the decoder's error paths are what a guest reaches most
    let Ok(req) = decode(data) else {
        return Corpus::Keep;
    };
    assert!((1..=MAX_NAMES).contains(&req.names.len()));
    for (i, n) in req.names.iter().enumerate() {
        assert!(valid_name(n), "{n:?}");
        assert!(!req.names[..i].contains(n), "{n:?} twice");
    }
    let canonical = match req.wait {
        None => format!("get {}", req.names.join(" ")),
        Some(w) => {
            assert!((1..=MAX_WAIT_SECS).contains(&w.seconds));
            let tag = w.tag.map_or_else(|| "-".to_owned(), |t| t.to_string());
            format!("wait {tag} {} {}", w.seconds, req.names.join(" "))
        }
    };
    assert_eq!(canonical.as_bytes(), data);
    let answer = Answer {
        node: "n1".into(),
        values: req
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), (i % 2 == 0).then(|| n.clone())))
            .collect(),
    };
    let (back, tag) = decode_reply(&answer.encode(), &req.names).expect("own reply decodes");
    assert_eq!(back, answer);
    assert_eq!(tag, answer.tag());
    Corpus::Keep
});
