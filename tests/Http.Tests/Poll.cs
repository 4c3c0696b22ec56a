namespace TauCluster.Http.Tests;

/// <summary>
/// Bounded polling of a real condition, for the few states no event announces: /metrics answers from a scrape cache
/// (the Prometheus exporter keeps each scrape for 300 ms), and a departed client's admission slot is freed when its
/// handler unwinds, which no client sees. Everything else in these tests waits on events.
/// </summary>
internal static class Poll
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(25);

    /// <summary>Probes until <paramref name="holds"/> is true of the result, and returns that result; fails after <paramref name="within"/>.</summary>
    public static async Task<T> Until<T>(Func<Task<T>> probe, Func<T, bool> holds, string what, TimeSpan? within = null)
    {
        var deadline = DateTime.UtcNow + (within ?? TimeSpan.FromSeconds(30));
        while (true)
        {
            var value = await probe();
            if (holds(value)) return value;
            if (DateTime.UtcNow > deadline) throw new Xunit.Sdk.XunitException($"{what}: not so after {within ?? TimeSpan.FromSeconds(30)}; last seen: {value}");
            await Task.Delay(Interval);
        }
    }
}
