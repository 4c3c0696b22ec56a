using Microsoft.Extensions.DependencyInjection;
using Orleans.Storage;
using TauCluster.Grains;

namespace TauCluster.Cluster.Tests;

/// <summary>
/// A session written by someone else in the middle of a generation, as a silo that was cut off and declared dead does
/// when its link comes back (its last checkpoint reaches Redis late): the activation whose checkpoint then conflicts
/// goes, and the client's retry resumes from what is stored, with the same tokens.
/// </summary>
public sealed class WriteConflictTests
{
    [Fact]
    public async Task A_checkpoint_that_loses_a_write_conflict_is_resumed_with_identical_output()
    {
        // Memory storage checks etags (file storage does not).
        var fixture = new ClusterFixture(1, o => o.Storage = "memory");
        await fixture.InitializeAsync();
        try
        {
            var spec = new SessionSpec(TestWorld.Tiny, null, new SamplingSettings(0.9, 40, 0.95, 5));
            async Task<string> Start()
            {
                var id = $"w-{Guid.NewGuid():N}";
                await fixture.Sessions.Open(id, spec);
                await fixture.Sessions.Append(id, PromptInput.FromText("two writers, one session"));
                return id;
            }

            var uninterrupted = new List<int>();
            await foreach (var t in fixture.Sessions.Generate(await Start(), 60)) uninterrupted.Add(t.Id);

            var session = await Start();
            var sessions = fixture.Sessions;
            var resumes = new List<StreamResume>();
            sessions.Resuming += resumes.Add;
            var received = new List<int>();
            await foreach (var t in sessions.Generate(session, 60))
            {
                received.Add(t.Id);
                if (received.Count == 13) await WriteBehindItsBack(fixture, session);
            }

            Assert.Equal(uninterrupted, received);
            // One failure (the conflict, or the stream's end when the stale activation went first), then a fresh
            // activation that read the session as stored and rebuilt its cache: the stale one did not serve again.
            var resume = Assert.Single(resumes);
            Assert.True(TauSessionClient.IsTransient(resume.Failure, default), resume.Failure.ToString());
            Assert.True((await sessions.Info(session)).RebuiltTokens > 0, "a new activation replayed the stored tokens");
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }

    /// <summary>Writes the session's stored state back as it is: a new etag, which the live activation does not know.</summary>
    private static async Task WriteBehindItsBack(ClusterFixture fixture, string session)
    {
        var storage = fixture.Cluster.Silos[0].ServiceProvider.GetRequiredKeyedService<IGrainStorage>(TauStorage.Name);
        var grain = fixture.Sessions.Session(session).GetGrainId();
        for (int attempt = 1; ; attempt++)
        {
            var state = new GrainState<SessionState>();
            await storage.ReadStateAsync("session", grain, state);
            try
            {
                await storage.WriteStateAsync("session", grain, state);
                return;
            }
            catch (InconsistentStateException) when (attempt < 10)
            {
                // The activation's own checkpoint came between the read and the write: again.
            }
        }
    }
}
