//! Client-facing wire types and routing of the data-plane API: which endpoint a request is
//! (`route`), the OpenAI-shaped error body (`error`), and the minimal borrowed parse of an OpenAI
//! request that routing needs (`openai`), with the value checks made during it (`check`).

pub mod anthropic;
pub mod chat;
mod check;
pub mod client;
pub mod embeddings;
pub mod error;
pub mod json_str;
pub mod messages;
pub mod observe;
pub mod openai;
pub mod responses;

pub use error::ApiError;

/// A body format spoken by clients and providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
}

/// An LLM endpoint whose request carries a `model` and is sent upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    /// Anthropic's Messages API, inbound.
    Messages,
    /// OpenAI's Responses API, inbound: served as a chat request (the request the gateway makes
    /// of it says `ChatCompletions`); this is what the request's record and metrics say.
    Responses,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Messages,
        Endpoint::Responses,
    ];

    /// Path below an OpenAI-layout base URL (`/v1`) for this endpoint or its OpenAI equivalent.
    pub fn openai_suffix(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
        }
    }

    /// Low-cardinality label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
            Endpoint::Responses => "responses",
        }
    }

    /// The body field (besides `model`) without which the request is meaningless.
    pub fn required_field(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions | Endpoint::Messages => "messages",
            Endpoint::Completions => "prompt",
            Endpoint::Embeddings | Endpoint::Responses => "input",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Endpoint::ChatCompletions => 0,
            Endpoint::Completions => 1,
            Endpoint::Embeddings => 2,
            Endpoint::Messages => 3,
            Endpoint::Responses => 4,
        }
    }
}

/// What a data-plane request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Llm(Endpoint),
    Models,
    /// `GET /v1/models/{id}`.
    Model,
    /// `POST /v1/messages/count_tokens`: answered by the gateway's token estimator.
    CountTokens,
    /// `GET` or `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`: the
    /// gateway's response store.
    StoredResponse,
    NotFound,
    MethodNotAllowed(&'static str),
}

/// Routes by method and path. The `/v1` prefix is optional, as clients configured with a bare
/// host as base URL omit it; a query string and one trailing slash are ignored.
pub fn route(method: &http::Method, path: &str) -> Route {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let path = path.strip_suffix('/').unwrap_or(path);
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let (endpoint, allowed) = match path {
        "/chat/completions" => (Some(Endpoint::ChatCompletions), "POST"),
        "/completions" => (Some(Endpoint::Completions), "POST"),
        "/embeddings" => (Some(Endpoint::Embeddings), "POST"),
        "/messages" => (Some(Endpoint::Messages), "POST"),
        "/responses" => (Some(Endpoint::Responses), "POST"),
        "/models" => (None, "GET"),
        p if p.starts_with("/models/") && p.len() > "/models/".len() => {
            return if *method == http::Method::GET {
                Route::Model
            } else {
                Route::MethodNotAllowed("GET")
            }
        }
        p if p.starts_with("/responses/") && p.len() > "/responses/".len() => {
            let input_items = p.ends_with("/input_items");
            return match *method {
                http::Method::GET => Route::StoredResponse,
                http::Method::DELETE if !input_items => Route::StoredResponse,
                _ if input_items => Route::MethodNotAllowed("GET"),
                _ => Route::MethodNotAllowed("GET, DELETE"),
            };
        }
        "/messages/count_tokens" => {
            return if *method == http::Method::POST {
                Route::CountTokens
            } else {
                Route::MethodNotAllowed("POST")
            }
        }
        _ => return Route::NotFound,
    };
    let want = if allowed == "POST" {
        http::Method::POST
    } else {
        http::Method::GET
    };
    if *method != want {
        return Route::MethodNotAllowed(allowed);
    }
    match endpoint {
        Some(e) => Route::Llm(e),
        None => Route::Models,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn routes_with_and_without_v1() {
        assert_eq!(
            route(&Method::POST, "/v1/chat/completions"),
            Route::Llm(Endpoint::ChatCompletions)
        );
        assert_eq!(
            route(&Method::POST, "/chat/completions/"),
            Route::Llm(Endpoint::ChatCompletions)
        );
        assert_eq!(
            route(&Method::POST, "/v1/embeddings?x=1"),
            Route::Llm(Endpoint::Embeddings)
        );
        assert_eq!(
            route(&Method::POST, "/v1/completions"),
            Route::Llm(Endpoint::Completions)
        );
        assert_eq!(route(&Method::GET, "/v1/models"), Route::Models);
        assert_eq!(route(&Method::POST, "/v1/responses"), Route::Llm(Endpoint::Responses));
        assert_eq!(route(&Method::GET, "/v1/responses/resp_1"), Route::StoredResponse);
        assert_eq!(route(&Method::DELETE, "/v1/responses/resp_1"), Route::StoredResponse);
        assert_eq!(
            route(&Method::GET, "/v1/responses/resp_1/input_items?order=asc"),
            Route::StoredResponse
        );
        assert_eq!(
            route(&Method::DELETE, "/v1/responses/resp_1/input_items"),
            Route::MethodNotAllowed("GET")
        );
        assert_eq!(route(&Method::GET, "/v1/responses"), Route::MethodNotAllowed("POST"));
    }

    #[test]
    fn wrong_method_and_unknown_path() {
        assert_eq!(
            route(&Method::GET, "/v1/chat/completions"),
            Route::MethodNotAllowed("POST")
        );
        assert_eq!(route(&Method::POST, "/v1/models"), Route::MethodNotAllowed("GET"));
        assert_eq!(route(&Method::POST, "/v1/chat"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/"), Route::NotFound);
    }
}
