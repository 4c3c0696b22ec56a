namespace TauCluster.Engine;

/// <summary>
/// Turns a stream of generated ids into text deltas, holding back an incomplete UTF-8 sequence (which decodes to
/// U+FFFD) until the token that completes it arrives. Only the ids since the last emitted text are decoded: text is
/// emitted only where it ends in a whole character, where a byte-level decoder starts afresh, so decoding the rest on
/// its own gives what decoding everything would, at a cost per token that does not grow with the reply.
/// </summary>
public sealed class IncrementalDecoder(ITextTokenizer tokenizer)
{
    private readonly List<int> pending = [];

    /// <summary>Adds one id and returns the text it completes (often empty mid-character).</summary>
    public string Add(int id)
    {
        pending.Add(id);
        string text = tokenizer.Decode(pending);
        if (text.Length == 0 || text.EndsWith('\uFFFD')) return "";
        pending.Clear();
        return text;
    }

    /// <summary>At the end of a stream: whatever was held back, incomplete characters included (as U+FFFD).</summary>
    public string Flush()
    {
        string rest = pending.Count == 0 ? "" : tokenizer.Decode(pending);
        pending.Clear();
        return rest;
    }
}
