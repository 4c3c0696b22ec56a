using TauCluster.Grains;

namespace TauCluster.Cluster.Tests;

/// <summary>Killing the silo that hosts a session, in the middle of a generation, changes nothing in its output.</summary>
public sealed class FailoverTests
{
    /// <param name="presence">With the penalties on, their counts must come back from the persisted transcript exactly.</param>
    /// <param name="logprobs">With log-probabilities asked, those of the resumed stream must be the uninterrupted one's.</param>
    [Theory]
    [InlineData(0.0, 0.0, 1.0, 0.0, false)]
    [InlineData(0.6, 0.4, 1.3, 0.05, true)]
    public async Task Session_continues_on_another_silo_with_identical_output_after_its_silo_is_killed(
        double presence, double frequency, double repetition, double minP, bool logprobs)
    {
        var fixture = new ClusterFixture();
        await fixture.InitializeAsync();
        try
        {
            var spec = new SessionSpec(TestWorld.Tiny, null, new SamplingSettings(0.9, 40, 0.95, 11,
                presence, frequency, repetition == 1 ? null : repetition, minP));
            const string prompt = "a conversation that outlives its silo";
            const int length = 60;

            async Task<string> Start()
            {
                var id = $"f-{Guid.NewGuid():N}";
                await fixture.Sessions.Open(id, spec);
                await fixture.Sessions.Append(id, PromptInput.FromText(prompt));
                return id;
            }

            var request = new CompletionRequest(null, null, length, Logprobs: logprobs ? 3 : null);
            var uninterrupted = new List<CompletionChunk>();
            await foreach (var t in fixture.Sessions.Complete(await Start(), request)) uninterrupted.Add(t);

            var id = await Start();
            string hostSilo = (await fixture.Sessions.Info(id)).Silo;
            var sessions = fixture.Sessions;
            var resumes = new List<StreamResume>();
            sessions.Resuming += resumes.Add;
            var received = new List<CompletionChunk>();
            await foreach (var t in sessions.Complete(id, request))
            {
                received.Add(t);
                if (received.Count == 13)
                    await fixture.Cluster.KillSiloAsync(fixture.Cluster.Silos.Single(s => s.SiloAddress.ToString() == hostSilo));
            }

            Assert.Equal(uninterrupted.Select(t => t.Id), received.Select(t => t.Id));
            Assert.Equal(uninterrupted.Select(t => t.Position), received.Select(t => t.Position));
            Assert.Equal(string.Concat(uninterrupted.Select(t => t.Text)), string.Concat(received.Select(t => t.Text)));
            static string Scores(CompletionChunk t) => t.Logprob is { } s ? $"{s.Token} {s.Logprob:R} {string.Join(',', s.TopTokens)} {string.Join(',', s.TopLogprobs)}" : "none";
            Assert.Equal(uninterrupted.Select(Scores), received.Select(Scores));
            Assert.Equal(logprobs, received.All(t => t.Logprob is not null));
            // The stream was cut after the tokens the client had, and requested again.
            Assert.NotEmpty(resumes);
            Assert.InRange(resumes[0].NextPosition, received[13].Position, received[^1].Position);
            var after = await fixture.Sessions.Info(id);
            Assert.NotEqual(hostSilo, after.Silo);
            Assert.True(after.RebuiltTokens > 0, "the new activation rebuilt its cache by replaying the persisted tokens");
            // What is stored, not what the live activation holds: deactivate, then read the state back from storage.
            await fixture.Cluster.DeactivateAsync(fixture.Sessions.Session(id));
            var stored = await fixture.Sessions.Session(id).GetTokens();
            Assert.Equal(received.Select(t => t.Id), stored[^length..]);
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }
}
