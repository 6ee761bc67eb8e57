//! OpenAI embeddings wire helpers shared by every dialect and the mock.

use base64::Engine;

/// OpenAI's `encoding_format: "base64"`: standard padded base64 of the little-endian f32 bytes.
pub fn base64_f32(v: impl IntoIterator<Item = f32>) -> String {
    let bytes: Vec<u8> = v.into_iter().flat_map(f32::to_le_bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::base64_f32;

    #[test]
    fn matches_openai_encoding() {
        assert_eq!(base64_f32([1.0f32]), "AACAPw==");
        assert_eq!(base64_f32([]), "");
    }
}
