using TauCluster.Engine;
using TauCluster.Grains;

namespace TauCluster.Cluster.Tests;

/// <summary>
/// A session past its cache budget moves its oldest segments to context-shard grains on other silos, and generates
/// exactly the tokens it generates whole on one silo: with every shard alive, and when a shard's silo is killed.
/// </summary>
public sealed class ContextShardTests
{
    private const int PromptLength = 100_000;
    private const int Generated = 40;

    /// <summary>About one and a half segments of the "long" test model: each shard takes one, the session keeps the newest.</summary>
    private const long Budget = 3_500_000;

    private static readonly SessionSpec Spec = new(TestWorld.Long, null, new SamplingSettings(0.8, 50, 0.95, 2026));
    private static readonly int[] Prompt = Enumerable.Range(0, PromptLength).Select(i => (int)((uint)(i * 2654435761L >> 7) % 200) + 32).ToArray();
    private static readonly SemaphoreSlim ReferenceLock = new(1, 1);
    private static int[]? reference;

    /// <summary>The same session on a one-silo cluster that keeps every session whole.</summary>
    private static async Task<int[]> Reference()
    {
        await ReferenceLock.WaitAsync();
        try
        {
            if (reference is not null) return reference;
            var whole = new ClusterFixture(1, o => o.ContextBudgetBytes = 0);
            await whole.InitializeAsync();
            try
            {
                var (ids, info) = await Run(whole, afterToken: null);
                Assert.Equal(0, info.Shards);
                return reference = ids;
            }
            finally
            {
                await whole.DisposeAsync();
            }
        }
        finally
        {
            ReferenceLock.Release();
        }
    }

    private static async Task<(int[] Ids, SessionInfo Info)> Run(ClusterFixture fixture, Func<int, string, Task>? afterToken)
    {
        var id = $"long-{Guid.NewGuid():N}";
        await fixture.Sessions.Open(id, Spec);
        var appended = await fixture.Sessions.Append(id, PromptInput.FromIds(Prompt));
        Assert.Equal(PromptLength, appended.Length);
        var ids = new List<int>();
        await foreach (var token in fixture.Sessions.Generate(id, Generated))
        {
            ids.Add(token.Id);
            if (afterToken is not null) await afterToken(ids.Count, id);
        }
        return ([.. ids], await fixture.Sessions.Info(id));
    }

    private static ClusterFixture Sharded() => new(3, o => o.ContextBudgetBytes = Budget);

    [Fact]
    public async Task A_100K_token_session_spread_over_shards_on_other_silos_generates_exactly_the_unsharded_tokens()
    {
        var expected = await Reference();
        var fixture = Sharded();
        await fixture.InitializeAsync();
        try
        {
            ContextShardInfo[] shards = [];
            var (ids, info) = await Run(fixture, async (count, id) =>
            {
                if (count == 1) shards = await fixture.Sessions.Session(id).GetShards();
            });

            Assert.Equal(expected, ids);
            Assert.True(shards.Length >= 3, $"{shards.Length} shards");
            Assert.All(shards, s => Assert.True(s.Complete));
            Assert.True(shards.Select(s => s.Silo).Distinct().Count() >= 2, "the shards are spread over at least two silos");
            Assert.DoesNotContain(info.Silo, shards.Select(s => s.Silo));
            Assert.Equal(Enumerable.Range(0, shards.Length).Select(i => i * LambdaIndex.SegmentSize), shards.Select(s => s.Start));
            Assert.Equal(shards.Length, info.Shards);
            Assert.Equal(shards.Sum(s => s.Bytes), info.ShardBytes);
            Assert.True(info.CacheBytes <= Budget + LambdaIndex.SegmentSize * 2L * 80, $"the session keeps {info.CacheBytes} bytes, its budget is {Budget}");

            // what the silos report: every shard counted once, with its bytes
            long reported = fixture.Cluster.Silos.Sum(s => fixture.SiloService<LocalShards>(s.SiloAddress.ToString()).Bytes);
            Assert.Equal(info.ShardBytes, reported);
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }

    [Fact]
    public async Task Killing_a_shards_silo_mid_generation_rebuilds_it_from_the_tokens_with_identical_output()
    {
        var expected = await Reference();
        var fixture = Sharded();
        await fixture.InitializeAsync();
        try
        {
            string? killed = null;
            var (ids, info) = await Run(fixture, async (count, id) =>
            {
                if (count != 10) return;
                var session = await fixture.Sessions.Info(id);
                var shards = await fixture.Sessions.Session(id).GetShards();
                killed = shards.Select(s => s.Silo).First(s => s != session.Silo);
                await fixture.Cluster.KillSiloAsync(fixture.Cluster.Silos.Single(s => s.SiloAddress.ToString() == killed));
            });

            Assert.NotNull(killed);
            Assert.Equal(expected, ids);
            Assert.True(info.RebuiltTokens > 0, "the lost shard's positions were computed again");
            var after = await fixture.Sessions.Session(info.Session).GetShards();
            Assert.True(after.Length >= 3);
            Assert.All(after, s => Assert.NotEqual(killed, s.Silo));
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_fork_gets_shards_of_its_own_and_deleting_a_session_drops_its_shards()
    {
        var fixture = Sharded();
        await fixture.InitializeAsync();
        try
        {
            var parent = $"p-{Guid.NewGuid():N}";
            var child = $"c-{Guid.NewGuid():N}";
            await fixture.Sessions.Open(parent, Spec);
            await fixture.Sessions.Append(parent, PromptInput.FromIds(Prompt[..(3 * LambdaIndex.SegmentSize)]));
            var parentShards = await fixture.Sessions.Session(parent).GetShards();
            Assert.NotEmpty(parentShards);

            await fixture.Sessions.Session(parent).Fork(child);
            async Task<int[]> Next(string id, int count)
            {
                var ids = new List<int>();
                await foreach (var t in fixture.Sessions.Generate(id, count)) ids.Add(t.Id);
                return [.. ids];
            }
            var fromChild = await Next(child, 12);
            var childShards = await fixture.Sessions.Session(child).GetShards();
            Assert.Equal(parentShards.Select(s => s.Start), childShards.Select(s => s.Start));
            Assert.Empty(childShards.Select(s => s.Key).Intersect(parentShards.Select(s => s.Key)));
            Assert.Equal(fromChild, await Next(parent, 12));   // same tokens, same generator state: the same continuation

            long ShardsOf(string session) => fixture.Cluster.Silos.Sum(s =>
                fixture.SiloService<LocalShards>(s.SiloAddress.ToString()).Keys.Count(k => k.StartsWith(session + "/", StringComparison.Ordinal)));
            async Task Eventually(Func<bool> condition, string what)
            {
                for (int i = 0; i < 100 && !condition(); i++) await Task.Delay(100);
                Assert.True(condition(), what);
            }

            await fixture.Sessions.Session(parent).Delete();
            await Eventually(() => ShardsOf(parent) == 0, "the deleted parent's shards are dropped");
            Assert.Equal(childShards.Length, ShardsOf(child));
            Assert.Equal(12, (await Next(child, 12)).Length);   // the child still generates over its own shards

            await fixture.Sessions.Session(child).Delete();
            await Eventually(() => ShardsOf(child) == 0, "the deleted child's shards are dropped");
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }
}
