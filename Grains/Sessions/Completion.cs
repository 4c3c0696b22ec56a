using TauCluster.Engine;

namespace TauCluster.Grains;

/// <summary>
/// One completion as its tokens arrive: decodes them incrementally, trims the stop sequences, and decides where the
/// reply ends and why. It depends only on the tokens, so a resumed request that goes through the same tokens again
/// emits the same chunks. Plain, so it is tested without a cluster.
/// </summary>
internal sealed class Completion(ITextTokenizer? tokenizer, IReadOnlyList<string> stops, CompletionRecord record)
{
    private readonly IncrementalDecoder? decoder = tokenizer is null ? null : new IncrementalDecoder(tokenizer);
    private readonly StopTrimmer trimmer = new(stops);

    /// <summary>The first position of the reply: the session's length after its prompt.</summary>
    public int Start => record.Start;

    /// <summary>The position after the last one the token budget allows.</summary>
    public int Target => record.Target;

    public bool Finished { get; private set; }

    /// <summary>The chunk for the token at <paramref name="position"/>; tokens come in position order from <see cref="Start"/>.</summary>
    public CompletionChunk Next(int position, int id)
    {
        if (Finished) throw new InvalidOperationException("the completion has finished");
        bool budgetSpent = position + 1 >= Target;
        string? text = null;
        if (decoder is not null)
        {
            string raw = decoder.Add(id);
            if (budgetSpent) raw += decoder.Flush();   // the last token carries what the decoder held back
            text = trimmer.Push(raw);
        }
        FinishReason? finish = trimmer.Stopped ? FinishReason.Stop : budgetSpent ? FinishReason.Length : null;
        if (finish == FinishReason.Length && text is not null) text += trimmer.Flush();   // it never became a stop sequence
        Finished = finish is not null;
        return new CompletionChunk(position, id, text, finish, position == Start ? record.Prompt : null);
    }

    /// <summary>The stop sequences of a request: its own, and for chat turns the start of the next user turn.</summary>
    public static string[] StopsOf(CompletionRequest request) =>
        request.Prompt?.Turns is not null ? [ChatTemplate.TurnStop, .. request.Stop ?? []] : request.Stop ?? [];
}
