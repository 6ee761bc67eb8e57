use super::*;
use crate::api::chat::Usage;
use crate::cache::replay;
use proptest::prelude::*;

fn answer_strategy() -> impl Strategy<Value = ChatResponse> {
    let call = ("[a-z_]{1,8}", "[a-z]{1,10}", "\\PC{0,600}").prop_map(|(id, name, args)| ToolCall {
        id: format!("call_{id}"),
        kind: "function".into(),
        function: FunctionCall { name, arguments: args },
    });
    let choice = (
        proptest::option::of("\\PC{1,700}"),
        proptest::option::of("\\PC{1,300}"),
        proptest::collection::vec(call, 0..3),
        prop_oneof![Just("stop"), Just("length"), Just("tool_calls")],
    );
    (
        proptest::collection::vec(choice, 1..3),
        any::<bool>(),
        0u64..10_000,
        0u64..10_000,
    )
        .prop_map(|(choices, with_usage, p, c)| ChatResponse {
            id: "chatcmpl-1".into(),
            object: "chat.completion".into(),
            created: 1_700_000_000,
            model: "gpt".into(),
            choices: choices
                .into_iter()
                .enumerate()
                .map(|(i, (text, reasoning, calls, finish))| Choice {
                    index: i as u32,
                    message: Message {
                        role: "assistant".into(),
                        content: text.map(Content::Text),
                        reasoning_content: reasoning,
                        tool_calls: (!calls.is_empty()).then_some(calls),
                        ..Message::default()
                    },
                    finish_reason: Some(finish.into()),
                    logprobs: None,
                })
                .collect(),
            usage: with_usage.then_some(Usage {
                prompt_tokens: p,
                completion_tokens: c,
                total_tokens: p + c,
                ..Usage::default()
            }),
            ..ChatResponse::default()
        })
}

proptest! {
    #[test]
    fn assembling_a_replayed_stream_gives_the_answer_back(a in answer_strategy()) {
        let mut asm = Assembler::default();
        for chunk in replay::chunks(&a) {
            asm.push(&chunk);
        }
        prop_assert_eq!(asm.finish(), Some(a));
    }
}

#[test]
fn a_stream_that_did_not_finish_is_not_an_answer() {
    let a = ChatResponse {
        id: "x".into(),
        choices: vec![Choice {
            index: 0,
            message: Message {
                role: "assistant".into(),
                content: Some(Content::Text("half an answ".into())),
                ..Message::default()
            },
            finish_reason: Some("stop".into()),
            logprobs: None,
        }],
        ..ChatResponse::default()
    };
    let chunks = replay::chunks(&a);
    let mut cut = Assembler::default();
    for c in &chunks[..chunks.len() - 1] {
        cut.push(c);
    }
    assert!(cut.finish().is_none(), "no finish reason: cut");
    assert!(Assembler::default().finish().is_none(), "nothing came");
}
