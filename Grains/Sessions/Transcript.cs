using System.Buffers.Binary;
using System.Collections;
using System.Runtime.InteropServices;
using TauCluster.Engine;

namespace TauCluster.Grains;

/// <summary>
/// A session's token ids: the one copy its grain works on (the persisted state holds them packed, <see cref="Pack"/>),
/// with what a conversation does to them: tokenising a prompt, finding how much of a new prompt the session already
/// holds, recognising a retried append, forgetting what follows a point. Plain, so it is tested without a cluster.
/// </summary>
public sealed class Transcript : IReadOnlyList<int>
{
    private readonly List<int> ids;

    public Transcript() => ids = [];

    private Transcript(List<int> ids) => this.ids = ids;

    public int Count => ids.Count;
    public int this[int index] => ids[index];

    /// <summary>A prompt's ids, checked against the model: text through its tokenizer, ids as given.</summary>
    public static int[] Tokenize(TauModel model, PromptInput prompt)
    {
        int[] tokens = prompt.Ids ?? (model.Tokenizer ?? throw new InvalidOptionsException("this model has no tokenizer: send token ids"))
            .Encode(prompt.Text ?? "").ToArray();
        if (tokens.Length == 0) throw new InvalidOptionsException("the prompt is empty");
        foreach (int id in tokens)
            if ((uint)id >= (uint)model.Config.VocabSize) throw new TokenOutOfRangeException(id, model.Config.VocabSize);
        return tokens;
    }

    /// <summary>
    /// How many of this transcript's tokens the prompt starts with, and the prompt's ids after them. Ids are compared as
    /// ids; text is compared as the text those tokens decode to, because replies come back as the text a client was
    /// shown, which need not re-encode to the ids that were sampled. The longest agreeing prefix is found by bisection.
    /// </summary>
    public (int Keep, int[] Remainder) SharedPrefix(ITextTokenizer? tokenizer, PromptInput prompt, int[] whole)
    {
        var held = CollectionsMarshal.AsSpan(ids);
        int common = 0;
        while (common < held.Length && common < whole.Length && held[common] == whole[common]) common++;
        if (common == held.Length || prompt.Text is not { } text || tokenizer is null)
            return (common, whole[common..]);

        bool Agrees(int k) => text.StartsWith(tokenizer.Decode(ids.Take(k)), StringComparison.Ordinal);
        int lo = common, hi = held.Length;   // Agrees(lo) holds: lo ids are shared, so is their text
        while (lo < hi)
        {
            int mid = (lo + hi + 1) / 2;
            if (Agrees(mid)) lo = mid;
            else hi = mid - 1;
        }
        if (lo == common) return (common, whole[common..]);
        string kept = tokenizer.Decode(ids.Take(lo));
        return (lo, tokenizer.Encode(text[kept.Length..]).ToArray());
    }

    /// <summary>
    /// Where a prompt goes in this transcript: how many of its tokens stay, and the ids that follow them. After what it
    /// holds, chat turns continue the template from the transcript's text; as the whole of it, they are rendered and
    /// compared with it (<see cref="SharedPrefix"/>). No prompt: everything stays, nothing follows.
    /// </summary>
    public (int Keep, int[] Remainder) Place(TauModel model, PromptInput? prompt, PromptPlacement placement)
    {
        if (prompt is null) return (Count, []);
        if (placement == PromptPlacement.Whole)
        {
            var whole = prompt.Turns is null ? prompt : PromptInput.FromText(ChatTemplate.Render(prompt.Turns));
            return SharedPrefix(model.Tokenizer, whole, Tokenize(model, whole));
        }
        var after = prompt.Turns is null ? prompt : PromptInput.FromText(ChatTemplate.After(TextTail(model.Tokenizer), prompt.Turns));
        return (Count, Tokenize(model, after));
    }

    /// <summary>The end of the transcript's text, as far back as a chat turn needs to see (its unfinished last line).</summary>
    private string TextTail(ITextTokenizer? tokenizer) =>
        Count == 0 ? "" : (tokenizer ?? throw new InvalidOptionsException("this model has no tokenizer: chat turns need text"))
            .Decode(ids.Skip(Math.Max(0, Count - 64)));

    /// <summary>Whether an append of <paramref name="appended"/> at <paramref name="expectedLength"/> already took effect (its reply was lost).</summary>
    public bool AlreadyAppended(int expectedLength, int[] appended) =>
        Count == expectedLength + appended.Length && ids.Skip(expectedLength).SequenceEqual(appended);

    public void Add(int id) => ids.Add(id);
    public void AddRange(int[] appended) => ids.AddRange(appended);

    /// <summary>Forgets every token after the first <paramref name="keep"/>.</summary>
    public void Truncate(int keep) => ids.RemoveRange(keep, ids.Count - keep);

    public void Clear() => ids.Clear();

    /// <summary>The tokens from position <paramref name="start"/> on: what a cache of that length lacks.</summary>
    public int[] From(int start) => ids.GetRange(start, ids.Count - start).ToArray();

    public int[] ToArray() => [.. ids];

    /// <summary>The ids as they stand, without a copy (valid until the transcript next changes).</summary>
    public ReadOnlySpan<int> AsSpan() => System.Runtime.InteropServices.CollectionsMarshal.AsSpan(ids);

    /// <summary>Little-endian int32s, one buffer: the persisted form.</summary>
    public byte[] Pack()
    {
        var bytes = new byte[ids.Count * sizeof(int)];
        for (int i = 0; i < ids.Count; i++) BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(i * sizeof(int)), ids[i]);
        return bytes;
    }

    public static Transcript Unpack(byte[] bytes)
    {
        var ids = new List<int>(bytes.Length / sizeof(int));
        for (int i = 0; i + sizeof(int) <= bytes.Length; i += sizeof(int)) ids.Add(BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(i)));
        return new Transcript(ids);
    }

    public IEnumerator<int> GetEnumerator() => ids.GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
