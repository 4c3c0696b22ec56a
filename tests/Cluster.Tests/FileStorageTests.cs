using Microsoft.Extensions.DependencyInjection;
using Orleans.Serialization;
using Orleans.Storage;
using TauCluster.Grains;

namespace TauCluster.Cluster.Tests;

/// <summary>
/// The file grain storage as two silos on one machine use it: two providers over one directory, each with its own
/// activation's view of a grain's state. A write from a stale view must fail, never overwrite the newer state.
/// </summary>
public sealed class FileStorageTests : IDisposable
{
    private readonly string directory = Path.Combine(Path.GetTempPath(), "tau-storage-tests", Guid.NewGuid().ToString("N"));
    private readonly ServiceProvider services = new ServiceCollection().AddSerializer().BuildServiceProvider();
    private static readonly GrainId Grain = GrainId.Create("session", "s-1");

    public void Dispose()
    {
        services.Dispose();
        try { Directory.Delete(directory, recursive: true); } catch (DirectoryNotFoundException) { }
    }

    private FileGrainStorage Silo() => new(directory, services.GetRequiredService<Serializer>());

    private static async Task<GrainState<int[]>> Read(FileGrainStorage storage)
    {
        var state = new GrainState<int[]>([]);
        await storage.ReadStateAsync("session", Grain, state);
        return state;
    }

    [Fact]
    public async Task A_write_from_a_stale_activation_fails_and_leaves_the_newer_state()
    {
        FileGrainStorage first = Silo(), second = Silo();
        var created = await Read(first);
        Assert.False(created.RecordExists);
        created.State = [1, 2, 3];
        await first.WriteStateAsync("session", Grain, created);

        var a = await Read(first);
        var b = await Read(second);
        Assert.Equal(a.ETag, b.ETag);
        a.State = [1, 2, 3, 4];
        await first.WriteStateAsync("session", Grain, a);
        b.State = [9];
        var stale = await Assert.ThrowsAsync<InconsistentStateException>(() => second.WriteStateAsync("session", Grain, b));
        Assert.Equal(a.ETag, stale.StoredEtag);
        var kept = (await Read(second)).State;
        Assert.Equal(new[] { 1, 2, 3, 4 }, kept);

        // A stale clear fails the same way; re-read, it succeeds.
        await Assert.ThrowsAsync<InconsistentStateException>(() => second.ClearStateAsync("session", Grain, b));
        var fresh = await Read(second);
        await second.ClearStateAsync("session", Grain, fresh);
        Assert.False((await Read(first)).RecordExists);
        // The first activation's view predates the clear: writing it back would resurrect a deleted session.
        await Assert.ThrowsAsync<InconsistentStateException>(() => first.WriteStateAsync("session", Grain, a));
    }

    [Fact]
    public async Task Every_write_gets_a_new_etag_even_within_one_clock_tick()
    {
        var storage = Silo();
        var state = await Read(storage);
        var etags = new HashSet<string>();
        for (int i = 0; i < 20; i++)
        {
            state.State = [i];
            await storage.WriteStateAsync("session", Grain, state);
            Assert.True(etags.Add(state.ETag!), $"write {i} reused ETag {state.ETag}");
            Assert.Equal(state.ETag, (await Read(storage)).ETag);
        }
    }

    [Fact]
    public async Task Of_activations_racing_from_the_same_read_exactly_one_write_lands()
    {
        var seed = Silo();
        var initial = await Read(seed);
        initial.State = [0];
        await seed.WriteStateAsync("session", Grain, initial);

        const int racers = 8;
        var views = new List<(FileGrainStorage Storage, GrainState<int[]> State)>();
        for (int i = 0; i < racers; i++)
        {
            var storage = Silo();   // each its own provider, as each silo has
            var view = await Read(storage);
            view.State = [i + 1];
            views.Add((storage, view));
        }
        using var start = new ManualResetEventSlim();
        var writes = views.Select(v => Task.Run(async () =>
        {
            start.Wait();
            await v.Storage.WriteStateAsync("session", Grain, v.State);
        })).ToArray();
        start.Set();
        var outcomes = await Task.WhenAll(writes.Select(async w =>
        {
            try { await w; return (Exception?)null; }
            catch (InconsistentStateException e) { return e; }
        }));

        int winner = Assert.Single(Enumerable.Range(0, racers), i => outcomes[i] is null);
        Assert.All(outcomes.Where(o => o is not null), o => Assert.IsType<InconsistentStateException>(o));
        var final = await Read(seed);
        Assert.Equal(views[winner].State.State, final.State);
        Assert.Equal(views[winner].State.ETag, final.ETag);
    }

    [Fact]
    public async Task Lock_files_stay_a_fixed_few_however_many_grains_write()
    {
        var storage = Silo();
        for (int i = 0; i < 300; i++)
        {
            var grain = GrainId.Create("session", $"s-{i}");
            var state = new GrainState<int[]>([i]);
            await storage.WriteStateAsync("session", grain, state);
            await storage.ClearStateAsync("session", grain, state);
        }
        Assert.InRange(Directory.GetFiles(Path.Combine(directory, ".locks")).Length, 1, 64);
        Assert.Empty(Directory.GetFiles(Path.Combine(directory, "session")));   // cleared grains leave nothing behind
    }
}
