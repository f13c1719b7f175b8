//! Looking into an SSE response as it passes: events are cut at their blank line, the JSON of
//! each `data` field is shown to a function that may replace it, everything else (event names,
//! ids, `retry`, comments) passes through as it came. Used to filter list answers that arrive
//! on a stream and to notice `notifications/tools/list_changed`.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

/// Longest event held while waiting for its end; a longer one is passed on as it is.
const MAX_EVENT: usize = 16 * 1024 * 1024;

/// Applies `edit` to the data of each event of `body`; `edit` returns the new data, or `None`
/// to keep it.
pub fn map_events<S, F>(
    body: S,
    edit: F,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    F: FnMut(&[u8]) -> Option<Vec<u8>> + Send + 'static,
{
    let state = (Box::pin(body), BytesMut::new(), edit, false);
    futures::stream::unfold(state, |(mut body, mut buf, mut edit, done)| async move {
        if done {
            return None;
        }
        loop {
            if let Some(end) = event_end(&buf) {
                let event = buf.split_to(end).freeze();
                let out = rewrite(&event, &mut edit);
                return Some((Ok(out), (body, buf, edit, false)));
            }
            if buf.len() > MAX_EVENT {
                let all = buf.split().freeze();
                return Some((Ok(all), (body, buf, edit, false)));
            }
            match body.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Some((Err(e), (body, buf, edit, true))),
                None => {
                    if buf.is_empty() {
                        return None;
                    }
                    let rest = buf.split().freeze();
                    return Some((Ok(rest), (body, buf, edit, true)));
                }
            }
        }
    })
}

/// Where the first complete event ends (after its blank line).
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn rewrite(event: &Bytes, edit: &mut impl FnMut(&[u8]) -> Option<Vec<u8>>) -> Bytes {
    let text = event.as_ref();
    let mut data: Vec<u8> = Vec::new();
    let mut lines = 0;
    for line in text.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            if lines > 0 {
                data.push(b'\n');
            }
            data.extend_from_slice(rest);
            lines += 1;
        }
    }
    if lines == 0 {
        return event.clone();
    }
    let Some(new) = edit(&data) else {
        return event.clone();
    };
    // The other fields as they were, then the new data on one line.
    let mut out = Vec::with_capacity(text.len());
    for line in text.split(|b| *b == b'\n') {
        let bare = line.strip_suffix(b"\r").unwrap_or(line);
        if bare.is_empty() || bare.starts_with(b"data:") {
            continue;
        }
        out.extend_from_slice(bare);
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&new);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(
        chunks: &[&str],
        edit: impl FnMut(&[u8]) -> Option<Vec<u8>> + Send + 'static,
    ) -> String {
        let chunks: Vec<Result<Bytes, std::io::Error>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from(c.to_string())))
            .collect();
        let out: Vec<Bytes> = map_events(futures::stream::iter(chunks), edit)
            .map(|r| r.unwrap())
            .collect()
            .await;
        out.iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn events_split_across_chunks_are_rewritten_and_others_kept() {
        let out = run(
            &[
                "id: 1\nevent: message\ndata: {\"a\"",
                ":1}\n\n: comment\n\nid: 2\ndata: {\"b\":2}\n\n",
            ],
            |d| (d == br#"{"a":1}"#).then(|| br#"{"a":0}"#.to_vec()),
        )
        .await;
        assert_eq!(
            out,
            "id: 1\nevent: message\ndata: {\"a\":0}\n\n: comment\n\nid: 2\ndata: {\"b\":2}\n\n"
        );
    }

    #[tokio::test]
    async fn crlf_and_multi_line_data_are_understood() {
        let out = run(&["data: {\"a\":\r\ndata: 1}\r\n\r\n"], |d| {
            assert_eq!(d, b"{\"a\":\n1}");
            Some(b"{}".to_vec())
        })
        .await;
        assert_eq!(out, "data: {}\n\n");
    }

    #[tokio::test]
    async fn an_unfinished_event_is_passed_on_at_the_end() {
        let out = run(&["data: {\"a\":1}"], |_| Some(b"x".to_vec())).await;
        assert_eq!(out, "data: {\"a\":1}");
    }
}
