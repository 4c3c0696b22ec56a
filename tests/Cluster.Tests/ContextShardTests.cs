using System.Runtime.InteropServices;
using Microsoft.Extensions.DependencyInjection;
using TauCluster.Engine;
using TauCluster.Grains;

namespace TauCluster.Cluster.Tests;

/// <summary>
/// A session past its cache budget moves its oldest segments to context-shard grains on other silos, and generates
/// exactly the tokens it generates whole on one silo: with every shard alive, and when a shard's silo is killed.
/// </summary>
public sealed class ContextShardTests(ContextShardTests.WholeCluster whole) : IClassFixture<ContextShardTests.WholeCluster>
{
    private const int Segment = LambdaIndex.SegmentSize;
    private const int PromptLength = 100_000;
    private const int Generated = 40;

    /// <summary>About one and a half segments of the "long" test model: each shard takes one, the session keeps the newest.</summary>
    private const long Budget = 3_500_000;

    private static readonly SessionSpec Spec = new(TestWorld.Long, null, new SamplingSettings(0.8, 50, 0.95, 2026));
    private static readonly int[] Prompt = Enumerable.Range(0, PromptLength).Select(i => (int)((uint)(i * 2654435761L >> 7) % 200) + 32).ToArray();

    /// <summary>A one-silo cluster that keeps every session whole (budget 0): what sharded sessions must match.</summary>
    public sealed class WholeCluster : IAsyncLifetime
    {
        private readonly SemaphoreSlim referenceLock = new(1, 1);
        private int[]? reference;

        public ClusterFixture Fixture { get; } = new(1, o => o.ContextBudgetBytes = 0);

        public Task InitializeAsync() => Fixture.InitializeAsync();
        public Task DisposeAsync() => Fixture.DisposeAsync();

        /// <summary>The 100K-token session's tokens, kept whole.</summary>
        public async Task<int[]> Reference()
        {
            await referenceLock.WaitAsync();
            try
            {
                if (reference is not null) return reference;
                var (ids, info) = await Run(Fixture, afterToken: null);
                Assert.Equal(0, info.Shards);
                return reference = ids;
            }
            finally
            {
                referenceLock.Release();
            }
        }
    }

    private Task<int[]> Reference() => whole.Reference();

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

    private static ClusterFixture Sharded(long budget = Budget) => new(3, o => o.ContextBudgetBytes = budget);

    /// <summary>Context shards of a session active on the silos, as the silos themselves count them.</summary>
    private static int ShardsOnSilos(ClusterFixture fixture, string session) => fixture.Cluster.Silos.Sum(s =>
        fixture.SiloService<LocalShards>(s.SiloAddress.ToString()).Keys.Count(k => k.StartsWith(session + "/", StringComparison.Ordinal)));

    private static int[] Bits(ReadOnlySpan<float> values) => MemoryMarshal.Cast<float, int>(values).ToArray();

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

            // and what the console's view of the cluster shows: each shard on the silo that holds it, the session's count on its own
            var view = await ClusterView.Silos(fixture.Client);
            var now = await fixture.Sessions.Session(info.Session).GetShards();
            Assert.Equal(now.Select(s => (s.Silo, s.Start, s.Bytes)).Order(),
                view.SelectMany(v => v.Shards.Where(s => s.Session == info.Session).Select(s => (v.Silo, s.Start, s.Bytes))).Order());
            var session = Assert.Single(view.Single(v => v.Silo == info.Silo).Sessions, s => s.Session == info.Session);
            Assert.Equal((info.Shards, info.ShardBytes), (session.Shards, session.ShardBytes));
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_recency_biased_session_on_shards_generates_exactly_what_it_generates_whole()
    {
        // The shards must weigh each key by how far back it lies from each query: they are sent the queries' positions.
        var spec = Spec with { Model = TestWorld.LongRecency };
        var prompt = Prompt[..(2 * Segment + 3000)];
        async Task<(int[] Ids, SessionInfo Info)> Generate(ClusterFixture fixture)
        {
            var id = $"recency-{Guid.NewGuid():N}";
            await fixture.Sessions.Open(id, spec);
            await fixture.Sessions.Append(id, PromptInput.FromIds(prompt));
            var ids = new List<int>();
            await foreach (var token in fixture.Sessions.Generate(id, 24)) ids.Add(token.Id);
            return ([.. ids], await fixture.Sessions.Info(id));
        }
        var (expected, wholeInfo) = await Generate(whole.Fixture);
        Assert.Equal(0, wholeInfo.Shards);
        var fixture = Sharded(budget: 1_700_000);
        await fixture.InitializeAsync();
        try
        {
            var (ids, info) = await Generate(fixture);
            Assert.True(info.Shards >= 1, $"{info.Shards} shards");
            Assert.Equal(expected, ids);
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
            ContextShardInfo[] before = [];
            int lostStart = -1;
            var (ids, info) = await Run(fixture, async (count, id) =>
            {
                if (count != 10) return;
                var session = await fixture.Sessions.Info(id);
                before = await fixture.Sessions.Session(id).GetShards();
                // The first shard on another silo than the first shard's: every shard before it lives on a silo that stays.
                var lost = before.FirstOrDefault(s => s.Silo != before[0].Silo);
                Assert.True(lost is not null, $"the shards are all on {before[0].Silo}");
                Assert.NotEqual(session.Silo, lost.Silo);
                (killed, lostStart) = (lost.Silo, lost.Start);
                await fixture.Cluster.KillSiloAsync(fixture.Cluster.Silos.Single(s => s.SiloAddress.ToString() == killed));
            });

            Assert.NotNull(killed);
            Assert.Equal(expected, ids);
            Assert.True(info.RebuiltTokens > 0, "the lost shard's positions were computed again");
            var after = await fixture.Sessions.Session(info.Session).GetShards();
            Assert.True(after.Length >= 3);
            Assert.All(after, s => Assert.NotEqual(killed, s.Silo));
            Assert.All(after, s => Assert.True(s.Complete));
            // The shards before the lost one stay: the same grains, on the same silos. The lost one and every one after it
            // were computed again from the tokens into new grains.
            var kept = before.Where(s => s.Start < lostStart).Select(s => (s.Start, s.Key, s.Silo)).ToArray();
            Assert.NotEmpty(kept);
            Assert.Equal(kept, after.Where(s => s.Start < lostStart).Select(s => (s.Start, s.Key, s.Silo)));
            var rebuilt = after.Where(s => s.Start >= lostStart).ToArray();
            Assert.NotEmpty(rebuilt);
            Assert.Equal(lostStart, rebuilt[0].Start);
            Assert.Empty(rebuilt.Select(s => s.Key).Intersect(before.Select(s => s.Key)));
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

            long ShardsOf(string session) => ShardsOnSilos(fixture, session);

            // Delete returns once every shard has dropped its segments (or could not be reached).
            Assert.Equal(parentShards.Length, ShardsOf(parent));
            await fixture.Sessions.Session(parent).Delete();
            Assert.Equal(0, ShardsOf(parent));
            Assert.Equal(childShards.Length, ShardsOf(child));
            Assert.Equal(12, (await Next(child, 12)).Length);   // the child still generates over its own shards

            await fixture.Sessions.Session(child).Delete();
            Assert.Equal(0, ShardsOf(child));
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }

    [Fact]
    public async Task Logits_through_shard_grains_on_other_silos_are_bitwise_the_logits_of_the_whole_session()
    {
        var fixture = Sharded();
        await fixture.InitializeAsync();
        try
        {
            // What a session grain on the first silo does past its budget, here in the test's process (the silos are in
            // it): its cache's sealed segments move through ContextShards to ContextShardGrains, which answer every
            // layer's queries over Orleans. Beside it, the same model and tokens in one cache, whole.
            var silo = fixture.Cluster.Silos[0];
            string caller = silo.SiloAddress.ToString();
            var model = TauModel.Load(Path.Combine(fixture.World.Options.ModelsRoot!, TestWorld.Long));
            var whole = new InferenceSession(model);
            var sharded = new InferenceSession(model);
            var cache = (IndexedTauCache)sharded.Cache;
            string sessionId = $"logits-{Guid.NewGuid():N}";
            var shards = new ContextShards(silo.ServiceProvider.GetRequiredService<IGrainFactory>(), sessionId, model.Config,
                cache.Domain.Temperature, fixture.SiloService<TauMetrics>(caller));

            var prompt = Prompt[..(2 * Segment + 500)];
            var expected = whole.Append(prompt).ToArray();
            float[] actual = [];
            for (int offset = 0; offset < prompt.Length; offset += Segment)
            {
                var block = prompt[offset..Math.Min(prompt.Length, offset + Segment)];
                // A forward pass off the test's thread, as a compute worker runs a session with shards: it waits on them in every layer.
                actual = await Task.Run(() => sharded.Append(block).ToArray());
                while (cache.SealedSegments > 0) await shards.Offload(cache, 1);
            }
            Assert.Equal(2 * Segment, cache.ExternalLength);
            Assert.Equal(2, shards.Count);
            var infos = await Task.WhenAll(shards.Grains.Select(g => g.GetInfo()));
            Assert.Equal([0, Segment], infos.Select(i => i.Start));
            Assert.All(infos, i => Assert.True(i.Complete));
            Assert.All(infos, i => Assert.NotEqual(caller, i.Silo));
            Assert.Equal(2, infos.Select(i => i.Silo).Distinct().Count());
            Assert.True(cache.Bytes < whole.Cache.Bytes / 4, $"the sharded cache keeps {cache.Bytes} of {whole.Cache.Bytes} bytes");

            Assert.Equal(Bits(expected), Bits(actual));   // the prefill's last row, with the second segment in a shard
            for (int step = 0; step < 4; step++)          // decode steps over both shards
            {
                int token = Sampler.ArgMax(whole.Logits);
                var wholeRow = whole.Append(token).ToArray();
                Assert.Equal(Bits(wholeRow), Bits(await Task.Run(() => sharded.Append(token).ToArray())));
            }
            var more = Prompt[^64..];                     // a block of rows: every row's logits
            var wholeRows = whole.AppendAllLogits(more);
            Assert.Equal(Bits(wholeRows), Bits(await Task.Run(() => sharded.AppendAllLogits(more))));

            await shards.DropAll();
            Assert.Equal(0, ShardsOnSilos(fixture, sessionId));
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_causal_session_past_its_budget_keeps_its_whole_KV_cache_and_generates_the_tokens_it_does_without_a_budget()
    {
        const long budget = 500_000;   // less than the causal session's cache, and less than one λ segment of the tau model
        var causal = new SessionSpec(TestWorld.LongCausal, null, Spec.Sampling);
        var prompt = Prompt[..(Segment + 64)];   // past one segment: a tau session this long moves it to a shard

        static async Task<(int[] Ids, SessionInfo Info, ContextShardInfo[] Shards)> Generate(ClusterFixture fixture, SessionSpec spec, int[] prompt)
        {
            var id = $"causal-{Guid.NewGuid():N}";
            await fixture.Sessions.Open(id, spec);
            await fixture.Sessions.Append(id, PromptInput.FromIds(prompt));
            var ids = new List<int>();
            await foreach (var token in fixture.Sessions.Generate(id, 12)) ids.Add(token.Id);
            var info = await fixture.Sessions.Info(id);
            Assert.Equal(ShardsOnSilos(fixture, id), info.Shards);
            return ([.. ids], info, await fixture.Sessions.Session(id).GetShards());
        }

        var expected = await Generate(whole.Fixture, causal, prompt);

        var fixture = Sharded(budget);
        await fixture.InitializeAsync();
        try
        {
            var (ids, info, shards) = await Generate(fixture, causal, prompt);
            Assert.True(info.CacheBytes > budget, $"the causal cache holds {info.CacheBytes} bytes, the budget is {budget}");
            Assert.Equal(0, info.Shards);
            Assert.Equal(0, info.ShardBytes);
            Assert.Empty(shards);
            Assert.Equal(expected.Info.CacheBytes, info.CacheBytes);   // the whole (K, V) cache, as without a budget
            Assert.Equal(expected.Ids, ids);

            // The budget is in force on this cluster: a tau session of the same tokens moves its sealed segment out.
            var tau = await Generate(fixture, Spec, prompt);
            Assert.Equal(1, tau.Info.Shards);
            Assert.Equal([0], tau.Shards.Select(s => s.Start));
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }
}
