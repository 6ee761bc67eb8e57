//! Embeddings from a model alias the gateway serves (`cache.semantic.embeddings`): the semantic
//! cache asks the gateway's own data plane (`POST /v1/embeddings` on its listener, over
//! loopback) with a virtual key of its own, so each embedding is routed, limited, recorded and
//! billed like any request, under that key. Blocking (`ureq`): callers run it on a blocking
//! thread, as they run the local model.

use std::time::Duration;

use crate::secret::Secret;

pub struct Remote {
    url: String,
    model: String,
    auth: Option<Secret>,
    agent: ureq::Agent,
}

impl Remote {
    /// `listen` is the data plane's address (an unspecified IP is asked on loopback).
    pub fn new(listen: std::net::SocketAddr, model: String, key: Option<Secret>, timeout: Duration) -> Remote {
        let mut addr = listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Remote {
            url: format!("http://{addr}/v1/embeddings"),
            model,
            auth: key.map(|k| Secret::new(format!("Bearer {}", k.expose()))),
            agent: ureq::AgentBuilder::new().timeout(timeout).build(),
        }
    }

    /// The unit vector of `text`.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        let mut req = self.agent.post(&self.url).set("x-tollgate-task", "cache-embedding");
        if let Some(a) = &self.auth {
            req = req.set("authorization", a.expose());
        }
        let answer = req
            .send_json(serde_json::json!({"model": self.model, "input": text}))
            .map_err(|e| match e {
                ureq::Error::Status(code, _) => format!("the embeddings alias answered {code}"),
                other => format!("the embeddings alias: {other}"),
            })?;
        let v: serde_json::Value = answer.into_json().map_err(|e| format!("the embeddings alias: {e}"))?;
        let mut out: Vec<f32> = v["data"][0]["embedding"]
            .as_array()
            .ok_or("the embeddings alias's answer has no data[0].embedding")?
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect::<Option<_>>()
            .ok_or("the embeddings alias's answer holds a non-number")?;
        let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt();
        if !norm.is_finite() || norm == 0.0 {
            return Err("the embeddings alias's vector has no direction".into());
        }
        out.iter_mut().for_each(|x| *x /= norm);
        Ok(out)
    }
}
