using TauCluster.Engine;
using TauCluster.Grains;

namespace TauCluster.Cluster.Tests;

/// <summary>Every bad request is a clear, typed error, and the cluster keeps serving afterwards.</summary>
[Collection(nameof(ClusterCollection))]
public sealed class BadRequestTests(ClusterFixture fixture)
{
    private static SessionSpec Spec(string model = TestWorld.Tiny, string? domain = null, double temperature = 0.7, double topP = 1, int topK = 0) =>
        new(model, domain, new SamplingSettings(temperature, topK, topP, 1));

    private ISessionGrain Session() => fixture.Client.GetGrain<ISessionGrain>($"bad-{Guid.NewGuid():N}");

    private async Task StillServes()
    {
        var id = $"ok-{Guid.NewGuid():N}";
        await fixture.Sessions.Open(id, Spec());
        await fixture.Sessions.Append(id, PromptInput.FromText("still here"));
        int count = 0;
        await foreach (var _ in fixture.Sessions.Generate(id, 4)) count++;
        Assert.Equal(4, count);
    }

    [Fact]
    public async Task Unknown_model_names_the_model_and_lists_the_known_ones()
    {
        var e = await Assert.ThrowsAsync<UnknownNameException>(() => Session().Open(Spec(model: "no-such-model")));
        Assert.Contains("unknown model 'no-such-model'", e.Message);
        Assert.Contains(TestWorld.Tiny, e.Message);
        await StillServes();
    }

    [Theory]
    [InlineData("../models/tiny")]
    [InlineData("/etc")]
    [InlineData("..")]
    public async Task A_path_instead_of_a_model_name_is_refused(string model)
    {
        await Assert.ThrowsAsync<InvalidOptionsException>(() => Session().Open(Spec(model: model)));
        await StillServes();
    }

    [Theory]
    [InlineData("../manifolds/chain32")]
    [InlineData("/tmp")]
    public async Task A_path_instead_of_a_domain_name_is_refused(string domain)
    {
        await Assert.ThrowsAsync<InvalidOptionsException>(() => Session().Open(Spec(domain: domain)));
        await StillServes();
    }

    [Fact]
    public async Task An_unknown_domain_and_a_domain_for_a_causal_model_are_refused()
    {
        await Assert.ThrowsAsync<UnknownNameException>(() => Session().Open(Spec(domain: "no-such-domain")));
        await Assert.ThrowsAsync<InvalidOptionsException>(() => Session().Open(Spec(model: TestWorld.TinyCausal, domain: TestWorld.Chain32)));
        await StillServes();
    }

    [SkippableFact]
    public async Task A_domain_of_the_wrong_dimension_is_refused()
    {
        TestPaths.RequireRealManifoldDirectory();
        var e = await Assert.ThrowsAsync<LaplacianException>(() => Session().Open(Spec(domain: TestWorld.RealDomain)));   // 384 ≠ 32
        Assert.Contains("dimension 384", e.Message);
        await StillServes();
    }

    [Theory]
    [InlineData(-1.0, 1.0, 0, "temperature")]
    [InlineData(1.0, 0.0, 0, "top_p")]
    [InlineData(1.0, 1.0, -3, "top_k")]
    public async Task Invalid_sampling_options_are_refused(double temperature, double topP, int topK, string field)
    {
        var e = await Assert.ThrowsAsync<InvalidOptionsException>(() => Session().Open(Spec(temperature: temperature, topP: topP, topK: topK)));
        Assert.Contains(field, e.Message);
        await StillServes();
    }

    [Fact]
    public async Task Over_long_prompt_and_out_of_vocabulary_ids_are_refused_and_nothing_is_lost()
    {
        var id = $"bad-{Guid.NewGuid():N}";
        await fixture.Sessions.Open(id, Spec());
        await fixture.Sessions.Append(id, PromptInput.FromText("kept"));
        var session = fixture.Sessions.Session(id);
        await Assert.ThrowsAsync<ContextLengthExceededException>(() => session.Append(PromptInput.FromIds(new int[5000])));
        await Assert.ThrowsAsync<TokenOutOfRangeException>(() => session.Append(PromptInput.FromIds([3, 256])));
        await Assert.ThrowsAsync<InvalidOptionsException>(() => session.Append(PromptInput.FromText("")));
        await Assert.ThrowsAsync<ContextLengthExceededException>(async () =>
        {
            await foreach (var _ in session.Complete(new CompletionRequest(null, null, 10_000))) { }
        });
        Assert.Equal(ByteTokenizer.Instance.Encode("kept"), await session.GetTokens());
        int count = 0;
        await foreach (var _ in fixture.Sessions.Generate(id, 3)) count++;
        Assert.Equal(3, count);
    }

    [Fact]
    public async Task Reopening_a_session_with_another_model_is_refused()
    {
        var id = $"bad-{Guid.NewGuid():N}";
        await fixture.Sessions.Open(id, Spec());
        var e = await Assert.ThrowsAsync<SessionConflictException>(() => fixture.Sessions.Session(id).Open(Spec(model: TestWorld.TinyCausal)));
        Assert.Contains("already runs model", e.Message);
    }
}
