namespace TauCluster.Grains;

/// <summary>
/// Streams generated text without its stop sequence, as OpenAI's API returns it: text that could still turn out to be
/// the start of a stop sequence is held back until the next delta decides it.
/// </summary>
internal sealed class StopTrimmer(IReadOnlyList<string> stops)
{
    private readonly System.Text.StringBuilder pending = new();

    public bool Stopped { get; private set; }

    /// <summary>Adds a delta and returns the text that is safe to emit now.</summary>
    public string Push(string? delta)
    {
        if (Stopped || string.IsNullOrEmpty(delta)) return "";
        pending.Append(delta);
        string text = pending.ToString();
        int stopAt = stops.Where(s => s.Length > 0).Select(s => text.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
        if (stopAt >= 0)
        {
            Stopped = true;
            pending.Clear();
            return text[..stopAt];
        }
        int hold = HeldBack(text);
        pending.Clear().Append(text, text.Length - hold, hold);
        return text[..^hold];
    }

    /// <summary>At the end of the stream: what was held back (it never became a stop sequence).</summary>
    public string Flush()
    {
        string rest = Stopped ? "" : pending.ToString();
        pending.Clear();
        return rest;
    }

    /// <summary>The longest end of <paramref name="text"/> that is the beginning of a stop sequence.</summary>
    private int HeldBack(string text)
    {
        int longest = 0;
        foreach (var stop in stops)
            for (int n = Math.Min(stop.Length - 1, text.Length); n > longest; n--)
                if (text.AsSpan(text.Length - n).SequenceEqual(stop.AsSpan(0, n))) { longest = n; break; }
        return longest;
    }
}
