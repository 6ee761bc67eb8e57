//! The inbound OpenAI Responses API (`POST /v1/responses`), served by every provider through the
//! canonical chat form: the request and its stored conversation → a chat request (`request`), and
//! the gateway's chat answer → the response object or its event stream (`encode`). The response
//! store itself is `usage::responses`; the endpoints around it are `proxy::responses`.

pub mod encode;
pub mod request;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub use encode::{Encoder, Turn};
pub use request::ResponsesRequest;

/// A Responses request in flight, as the proxy keeps it: the encoder of its answer, and what the
/// response store keeps of it.
#[derive(Debug)]
pub struct Pending {
    pub encoder: Encoder,
    /// Whether the answer is stored (`store`, true unless the client said false).
    pub store: bool,
    /// The conversation up to this turn's input, each item with an id.
    pub items: Vec<serde_json::Value>,
}
