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
