using System.Text.Json.Nodes;
using TauCluster.Engine;
using TauCluster.Grains;

namespace TauCluster.Silo;

/// <summary>
/// Log-probabilities in OpenAI's shapes: chat's <c>{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}</c> and
/// the completions endpoint's <c>{"tokens", "token_logprobs", "top_logprobs", "text_offset"}</c>. A token's text is its
/// own decoding; one that is only part of a character is written as OpenAI writes it, <c>bytes:\xNN…</c>, and a model
/// without a tokenizer gives <c>token_id:N</c>, as vLLM does.
/// </summary>
internal sealed class OpenAiLogprobs(ITextTokenizer? tokenizer)
{
    /// <summary>Where each token's text begins in the text written so far (text_offset), one choice's tokens in order.</summary>
    public sealed class Offsets(ITextTokenizer? tokenizer, OpenAiLogprobs shapes)
    {
        private readonly IncrementalDecoder? decoder = tokenizer is null ? null : new IncrementalDecoder(tokenizer);
        private int length;

        public int Next(int token)
        {
            int at = length;
            length += decoder?.Add(token).Length ?? shapes.Token(token).Length;
            return at;
        }
    }

    public Offsets NewOffsets() => new(tokenizer, this);

    public string Token(int id)
    {
        if (tokenizer is null) return $"token_id:{id}";
        string text = tokenizer.Decode([id]);
        return text.Contains('\uFFFD') ? "bytes:" + string.Concat(tokenizer.TokenBytes(id).Select(b => $"\\x{b:x2}")) : text;
    }

    private JsonArray? Bytes(int id) => tokenizer is null ? null : new JsonArray(tokenizer.TokenBytes(id).Select(b => (JsonNode)(int)b).ToArray());

    /// <summary>Chat's logprobs object for these tokens.</summary>
    public JsonObject Chat(IEnumerable<TokenLogprob> tokens) => new()
    {
        ["content"] = new JsonArray(tokens.Select(t =>
        {
            var entry = Entry(t.Token, t.Logprob ?? 0);
            entry["top_logprobs"] = new JsonArray(t.TopTokens.Select((id, i) => (JsonNode)Entry(id, t.TopLogprobs[i])).ToArray());
            return (JsonNode)entry;
        }).ToArray()),
        ["refusal"] = null,
    };

    private JsonObject Entry(int id, float logprob) => new() { ["token"] = Token(id), ["logprob"] = logprob, ["bytes"] = Bytes(id) };

    /// <summary>
    /// The completions endpoint's logprobs object for these tokens: the top alternatives as a map from token to
    /// logprob that also holds the chosen token, as OpenAI's does (so up to logprobs + 1 entries); a position nothing
    /// predicts (the first of an echoed prompt) has nulls.
    /// </summary>
    public JsonObject Completion(IEnumerable<TokenLogprob> tokens, Offsets offsets)
    {
        var (texts, logprobs, tops, at) = (new JsonArray(), new JsonArray(), new JsonArray(), new JsonArray());
        foreach (var t in tokens)
        {
            texts.Add(Token(t.Token));
            logprobs.Add(t.Logprob);
            at.Add(offsets.Next(t.Token));
            if (t.Logprob is not { } chosen)
            {
                tops.Add(null);
                continue;
            }
            var top = new JsonObject();
            for (int i = 0; i < t.TopTokens.Length; i++) top.TryAdd(Token(t.TopTokens[i]), t.TopLogprobs[i]);
            top.TryAdd(Token(t.Token), chosen);
            tops.Add(top);
        }
        return new JsonObject { ["tokens"] = texts, ["token_logprobs"] = logprobs, ["top_logprobs"] = tops, ["text_offset"] = at };
    }
}
