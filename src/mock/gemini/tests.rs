//! Unit tests of the mock's Gemini dialect (pure: no socket).

use super::*;

fn header(path: &str, key: Option<&str>) -> RequestHeader {
    let mut h = RequestHeader::build("POST", path.as_bytes(), None).unwrap();
    if let Some(k) = key {
        h.insert_header("x-goog-api-key", k).unwrap();
    }
    h
}

fn call(path: &str, key: Option<&str>, body: Value, b: &Behavior) -> (u16, Value) {
    let c = route(&HttpMethod::POST, path.split('?').next().unwrap()).ok().unwrap();
    match reply(&header(path, key), &c, body.to_string().as_bytes(), 7, b, Some("good")) {
        Reply::Json { status, body, .. } => (status, serde_json::from_slice(&body).unwrap()),
        Reply::Sse(mut s) => {
            let mut events = Vec::new();
            while let Some(ev) = s.next_event() {
                let text = std::str::from_utf8(&ev.data).unwrap();
                assert!(text.starts_with("data: ") && text.ends_with("\r\n\r\n"), "{text}");
                events.push(serde_json::from_str::<Value>(&text[6..text.len() - 4]).unwrap());
            }
            (200, Value::Array(events))
        }
    }
}

const GEN: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

fn hello() -> Value {
    json!({"systemInstruction": {"parts": [{"text": "Be kind."}]},
        "contents": [{"role": "user", "parts": [{"text": "Hello there"}]}]})
}

#[test]
fn routes_and_methods() {
    assert_eq!(
        route(&HttpMethod::POST, GEN).ok(),
        Some(Call {
            model: "gemini-2.5-flash".into(),
            op: Op::Generate
        })
    );
    let status = |r: Result<Call, Reply>| match r {
        Err(Reply::Json { status, .. }) => status,
        _ => 0,
    };
    assert_eq!(status(route(&HttpMethod::GET, GEN)), 405);
    assert_eq!(status(route(&HttpMethod::POST, "/v1beta/models/x:countTokens")), 404);
    assert_eq!(status(route(&HttpMethod::POST, "/v1beta/models/:generateContent")), 404);
    assert_eq!(
        status(route(&HttpMethod::POST, "/v1beta/tunedModels/x:generateContent")),
        404
    );
}

#[test]
fn keys_as_google_checks_them() {
    let b = Behavior::default();
    let (s, v) = call(GEN, None, hello(), &b);
    assert_eq!((s, v["error"]["status"].as_str()), (403, Some("PERMISSION_DENIED")));
    let (s, v) = call(GEN, Some("bad"), hello(), &b);
    assert_eq!(
        (s, v["error"]["details"][0]["reason"].as_str()),
        (400, Some("API_KEY_INVALID"))
    );
    assert_eq!(call(&format!("{GEN}?key=good"), None, hello(), &b).0, 200);
}

#[test]
fn text_answer_and_usage() {
    let (s, v) = call(GEN, Some("good"), hello(), &Behavior::default());
    assert_eq!(s, 200);
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "This is the Tollgate"
    );
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    // "Be kind." + "Hello there" = 19 chars → 5, plus 3 × 2 turns.
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 11);
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 4);
    assert_eq!(v["responseId"], "mock-gemini-7");
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");
    assert_eq!(prompt_tokens(&hello()), 11);
    let mut body = hello();
    body["generationConfig"] = json!({"maxOutputTokens": 2, "candidateCount": 2});
    let (_, v) = call(GEN, Some("good"), body, &Behavior::default());
    assert_eq!(v["candidates"][1]["index"], 1);
    assert_eq!(v["candidates"][1]["content"]["parts"][0]["text"], "This is");
    assert_eq!(v["candidates"][1]["finishReason"], "MAX_TOKENS");
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 4);
}

#[test]
fn streams_repeat_cumulative_usage_and_finish_last() {
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let b = Behavior {
        chunks: 3,
        ..Behavior::default()
    };
    let (_, v) = call(path, Some("good"), hello(), &b);
    let events = v.as_array().unwrap();
    assert_eq!(events.len(), 3);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["usageMetadata"]["candidatesTokenCount"], i + 1);
        assert_eq!(e["usageMetadata"]["promptTokenCount"], 11);
        assert_eq!(e["candidates"][0].get("finishReason").is_some(), i == 2);
    }
    let text: String = events
        .iter()
        .map(|e| {
            e["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(text, "This is the");
    let (s, v) = call(
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        Some("good"),
        hello(),
        &b,
    );
    assert_eq!((s, v["error"]["status"].as_str()), (400, Some("INVALID_ARGUMENT")));
}

#[test]
fn rejects_what_google_rejects() {
    let cases = [
        json!({}),
        json!({"contents": []}),
        json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}),
        json!({"contents": [{"role": "user", "parts": []}]}),
        json!({"contents": [{"role": "user", "parts": [{"text": ""}]}]}),
        json!({"contents": [{"role": "user", "parts": [{"text": "a", "inlineData": {"mimeType": "x", "data": "AA=="}}]}]}),
        json!({"contents": [{"role": "user", "parts": [{"thought": true}]}]}),
        json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "messages": []}),
        json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "generationConfig": {"max_tokens": 3}}),
        json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}],
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object",
                "properties": {"a": {"type": "string"}}, "additionalProperties": false}}]}]}),
        json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}],
            "tools": [{"functionDeclarations": [{"name": "f"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["f"]}}}),
        json!({"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "not base64!"}]}]}),
        json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}],
            "generationConfig": {"responseSchema": {"type": "object"}}}),
    ];
    for body in cases {
        let (s, v) = call(GEN, Some("good"), body.clone(), &Behavior::default());
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT", "{body}");
    }
    // snake_case spellings are protobuf JSON too.
    let ok = json!({"system_instruction": {"parts": [{"text": "s"}]},
        "contents": [{"role": "user", "parts": [{"inline_data": {"mime_type": "image/png", "data": "iVBO-_w"}}]}],
        "generation_config": {"max_output_tokens": 5, "response_mime_type": "application/json"}});
    assert_eq!(call(GEN, Some("good"), ok, &Behavior::default()).0, 200);
}

#[test]
fn tool_directive_and_gemini_3_signatures() {
    let tools = json!([{"functionDeclarations": [{"name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]}]);
    let b = Behavior {
        tool: Some("lookup".into()),
        ..Behavior::default()
    };
    let mut body = hello();
    body["tools"] = tools.clone();
    let (_, v) = call(GEN, Some("good"), body.clone(), &b);
    let part = &v["candidates"][0]["content"]["parts"][0];
    assert_eq!(part["functionCall"], json!({"name": "lookup", "args": {"q": "mock"}}));
    assert!(part.get("thoughtSignature").is_none());
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 2);
    assert_eq!(call(GEN, Some("good"), hello(), &b).0, 400);

    let g3 = "/v1beta/models/gemini-3-pro-preview:generateContent";
    let (_, v) = call(g3, Some("good"), body, &b);
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["thoughtSignature"],
        MOCK_SIGNATURE
    );
    let history = |sig: Option<&str>| {
        let mut call_part = json!({"functionCall": {"name": "lookup", "args": {"q": "mock"}}});
        if let Some(s) = sig {
            call_part["thoughtSignature"] = json!(s);
        }
        json!({"tools": tools, "contents": [
            {"role": "user", "parts": [{"text": "find it"}]},
            {"role": "model", "parts": [call_part]},
            {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"result": 1}}}]}
        ]})
    };
    let (s, v) = call(g3, Some("good"), history(None), &Behavior::default());
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("thought_signature"),
        "{v}"
    );
    assert_eq!(
        call(g3, Some("good"), history(Some(MOCK_SIGNATURE)), &Behavior::default()).0,
        200
    );
    assert_eq!(call(GEN, Some("good"), history(None), &Behavior::default()).0, 200);
}

#[test]
fn forced_errors_are_google_shaped() {
    let b = Behavior {
        status: Some(429),
        retry_after: Some(3),
        ..Behavior::default()
    };
    let r = reply(
        &header(GEN, None),
        &route(&HttpMethod::POST, GEN).ok().unwrap(),
        b"{}",
        1,
        &b,
        None,
    );
    let Reply::Json { status, body, headers } = r else {
        panic!("json")
    };
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 429);
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(v["error"]["details"][0]["retryDelay"], "3s");
    assert!(headers.contains(&("retry-after", "3".into())));
}

#[test]
fn embeddings() {
    let path = "/v1beta/models/gemini-embedding-001:batchEmbedContents";
    let req = |model: &str| {
        json!({"requests": [
            {"model": model, "content": {"parts": [{"text": "hello"}]}},
            {"model": model, "content": {"parts": [{"text": "world"}]}, "outputDimensionality": 3}
        ]})
    };
    let (s, v) = call(
        path,
        Some("good"),
        req("models/gemini-embedding-001"),
        &Behavior::default(),
    );
    assert_eq!(s, 200);
    let first: Vec<f32> = serde_json::from_value(v["embeddings"][0]["values"].clone()).unwrap();
    assert_eq!(first, embedding_vector(&Input::Text("hello"), DEFAULT_EMBEDDING_DIMS));
    assert_eq!(v["embeddings"][1]["values"].as_array().unwrap().len(), 3);
    assert_eq!(
        call(path, Some("good"), req("models/other"), &Behavior::default()).0,
        400
    );
    assert_eq!(
        call(path, Some("good"), json!({"requests": []}), &Behavior::default()).0,
        400
    );
    let one = "/v1beta/models/gemini-embedding-001:embedContent";
    let (s, v) = call(
        one,
        Some("good"),
        json!({"content": {"parts": [{"text": "hello"}]}}),
        &Behavior::default(),
    );
    assert_eq!(s, 200);
    assert_eq!(
        v["embedding"]["values"].as_array().unwrap().len(),
        DEFAULT_EMBEDDING_DIMS
    );
}
