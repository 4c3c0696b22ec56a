namespace TauCluster.Engine;

/// <summary>
/// Turns a growing list of generated ids into text deltas, holding back an incomplete UTF-8 sequence
/// (which decodes to U+FFFD) until the token that completes it arrives.
/// </summary>
public sealed class IncrementalDecoder(ITextTokenizer tokenizer)
{
    private readonly List<int> ids = [];
    private int emitted;

    /// <summary>Adds one id and returns the text it completes (often empty mid-character).</summary>
    public string Add(int id)
    {
        ids.Add(id);
        string text = tokenizer.Decode(ids);
        if (text.EndsWith('\uFFFD') || text.Length <= emitted) return "";
        string delta = text[emitted..];
        emitted = text.Length;
        return delta;
    }

    /// <summary>At the end of a stream: whatever was held back, incomplete characters included (as U+FFFD).</summary>
    public string Flush()
    {
        string text = tokenizer.Decode(ids);
        string rest = text.Length > emitted ? text[emitted..] : "";
        emitted = text.Length;
        return rest;
    }
}
