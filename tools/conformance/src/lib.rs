//! The `test_*` tools the official MCP conformance suite calls, so that the
//! suite exercises Stockade's whole call path: every content type a tool
//! can return (text, image, audio, embedded resources, several at once)
//! and a tool error. Each returns fixed content.

use schemars::JsonSchema;
use serde::Deserialize;
use stockade_sdk::{Media, Output, Tool, ToolError, Toolbox};

/// A 1x1 PNG.
const PIXEL: &[u8] = include_bytes!("pixel.png");
/// Ten milliseconds of 8 kHz silence, as WAV.
const SILENCE: &[u8] = include_bytes!("silence.wav");
/// The URI of the embedded resource.
const RESOURCE_URI: &str = "test://embedded-resource";

/// No arguments.
#[derive(Deserialize, JsonSchema)]
struct NoArgs {}

fn pixel() -> Media {
    Media {
        data: PIXEL.to_vec(),
        mime_type: "image/png".into(),
    }
}

fn simple_text(_: NoArgs) -> Result<Output, ToolError> {
    Ok(Output::text("This is a simple text response for testing."))
}

fn image_content(_: NoArgs) -> Result<Output, ToolError> {
    Ok(Output::default().and_image(pixel()))
}

fn audio_content(_: NoArgs) -> Result<Output, ToolError> {
    Ok(Output::default().and_audio(Media {
        data: SILENCE.to_vec(),
        mime_type: "audio/wav".into(),
    }))
}

fn embedded_resource(_: NoArgs) -> Result<Output, ToolError> {
    Ok(Output::default().and_text_resource(
        RESOURCE_URI,
        Some("text/plain".into()),
        "This is an embedded resource content.",
    ))
}

fn multiple_content_types(_: NoArgs) -> Result<Output, ToolError> {
    Ok(Output::text("Multiple content types test:")
        .and_image(pixel())
        .and_text_resource(
            "test://mixed-content-resource",
            Some("application/json".into()),
            r#"{"test":"data","value":123}"#,
        ))
}

fn error_handling(_: NoArgs) -> Result<Output, ToolError> {
    Err(ToolError::Failed(
        "This tool intentionally returns an error for testing".into(),
    ))
}

struct Fixture;

impl Toolbox for Fixture {
    fn tools() -> Vec<Tool> {
        vec![
            Tool::new("test_simple_text", "Returns simple text.", simple_text).read_only(),
            Tool::new("test_image_content", "Returns an image.", image_content).read_only(),
            Tool::new("test_audio_content", "Returns audio.", audio_content).read_only(),
            Tool::new(
                "test_embedded_resource",
                "Returns an embedded resource.",
                embedded_resource,
            )
            .read_only(),
            Tool::new(
                "test_multiple_content_types",
                "Returns text, an image and a resource.",
                multiple_content_types,
            )
            .read_only(),
            Tool::new("test_error_handling", "Always fails.", error_handling).read_only(),
        ]
    }
}

stockade_sdk::export_toolbox!(Fixture);
