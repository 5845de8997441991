//! Tools and earlier calls through a chat template that shows them
//! (issue 17, item 3): the definitions, an assistant turn's calls (their
//! arguments as an object) and the tool's answer reach the template in
//! llama.cpp's shape, and the syntax troupe reads calls in is the one the
//! template writes them in.

use serde_json::json;
use troupe_inference::chat::tool_calls::ToolSyntax;
use troupe_inference::chat::{
    ChatMessage, JinjaTemplate, MessageToolCall, RenderOptions, TemplateTokens,
};
use troupe_testkit::models::CHATML_TOOLS_TEMPLATE;

#[test]
fn tools_calls_and_answers_render_in_the_templates_syntax() {
    let template = JinjaTemplate::compile(
        "smollm2-tools",
        CHATML_TOOLS_TEMPLATE,
        TemplateTokens::default(),
    )
    .unwrap();
    let mut called = ChatMessage::assistant("");
    called.tool_calls = vec![MessageToolCall {
        id: "call_1".into(),
        name: "get_weather".into(),
        arguments: json!({"city": "Oslo"}),
    }];
    let mut answer = ChatMessage::tool("Snow, -3 C");
    answer.tool_call_id = Some("call_1".into());
    let messages = [
        ChatMessage::system("Be brief."),
        ChatMessage::user("Weather in Oslo?"),
        called,
        answer,
    ];
    let options = RenderOptions {
        add_generation_prompt: true,
        tools: vec![json!({"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }})],
    };
    let text = template.render(&messages, &options).unwrap();
    let expected = "<|im_start|>system\nBe brief.\n\n\
        You can call functions. Their signatures are inside <tools></tools>:\n<tools>\n\
        {\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}}\n\
        </tools>\n\nTo call one, write a JSON object with its name and arguments inside <tool_call></tool_call>:\n\
        <tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n\
        <|im_start|>user\nWeather in Oslo?<|im_end|>\n\
        <|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call><|im_end|>\n\
        <|im_start|>user\n<tool_response>\nSnow, -3 C\n</tool_response><|im_end|>\n\
        <|im_start|>assistant\n";
    assert_eq!(text, expected);
    assert_eq!(
        ToolSyntax::detect(CHATML_TOOLS_TEMPLATE),
        Some(ToolSyntax::Hermes)
    );
    // Without tools the same template is plain ChatML.
    let plain = template
        .render(
            &messages[..2],
            &RenderOptions {
                add_generation_prompt: true,
                tools: Vec::new(),
            },
        )
        .unwrap();
    assert_eq!(
        plain,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWeather in Oslo?<|im_end|>\n<|im_start|>assistant\n"
    );
}
