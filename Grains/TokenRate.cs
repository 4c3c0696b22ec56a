using System.Diagnostics;

namespace TauCluster.Grains;

/// <summary>
/// Tokens per second over the last few seconds, for a live view: a ring of per-second counts that the
/// generating thread adds to without locking (but when a second begins) and any thread reads.
/// </summary>
public sealed class TokenRate
{
    /// <summary>Whole seconds averaged: long enough to smooth a batch's rhythm, short enough that an ended generation shows as one soon.</summary>
    public const int WindowSeconds = 5;

    private readonly long[] counts = new long[WindowSeconds + 1];   // the window, and a slot for the next second to begin in
    private readonly long[] seconds = new long[WindowSeconds + 1];
    private readonly Func<long> clock;
    private long total;

    public TokenRate() : this(() => Stopwatch.GetTimestamp() / Stopwatch.Frequency) { }

    /// <summary>A rate on another clock of whole seconds (tests).</summary>
    public TokenRate(Func<long> wholeSeconds) => clock = wholeSeconds;

    public void Add()
    {
        long now = clock();
        int slot = (int)(now % counts.Length);
        if (Volatile.Read(ref seconds[slot]) != now)
            lock (counts)
                if (seconds[slot] != now)
                {
                    counts[slot] = 0;
                    Volatile.Write(ref seconds[slot], now);
                }
        Interlocked.Increment(ref counts[slot]);
        Interlocked.Increment(ref total);
    }

    /// <summary>Every token counted.</summary>
    public long Total => Interlocked.Read(ref total);

    /// <summary>
    /// Tokens counted in the last <see cref="WindowSeconds"/> seconds (the one under way included, so that a generation
    /// shows from its first second) over that window.
    /// </summary>
    public double PerSecond
    {
        get
        {
            long now = clock(), sum = 0;
            for (long s = now - WindowSeconds + 1; s <= now; s++)
            {
                int slot = (int)(s % counts.Length);
                if (Volatile.Read(ref seconds[slot]) == s) sum += Interlocked.Read(ref counts[slot]);
            }
            return sum / (double)WindowSeconds;
        }
    }
}
