using TauCluster.Engine;
using TauCluster.Grains;

namespace TauCluster.Cluster.Tests;

/// <summary>
/// A cluster with one accelerator silo (ILGPU's CPU accelerator standing in for a GPU) beside a CPU silo: sessions are
/// placed on the accelerator, keep their caches there, and give the tokens of the SIMD engine.
/// </summary>
public sealed class DeviceClusterTests : IAsyncLifetime
{
    private readonly ClusterFixture fixture = new(2, _ => { }, (index, options) =>
    {
        if (index != 1) return options;
        var accelerated = options.Clone();
        accelerated.Device = "ilgpu-cpu";
        return accelerated;
    });

    public Task InitializeAsync() => fixture.InitializeAsync();

    public Task DisposeAsync() => fixture.DisposeAsync();

    [Theory]
    [InlineData(TestWorld.Tiny)]
    [InlineData(TestWorld.TinyCausal)]
    public async Task Sessions_go_to_the_accelerator_silo_and_generate_the_tokens_of_the_SIMD_engine(string modelName)
    {
        var model = TauModel.Load(Path.Combine(fixture.World.Options.ModelsRoot!, modelName));
        var greedy = new SamplingSettings(0, 0, 1, 1);
        for (int i = 0; i < 4; i++)
        {
            var id = $"d-{Guid.NewGuid():N}";
            string prompt = $"device {i}";
            await fixture.Sessions.Open(id, new SessionSpec(modelName, null, greedy));
            await fixture.Sessions.Append(id, PromptInput.FromText(prompt));
            var ids = new List<int>();
            await foreach (var chunk in fixture.Sessions.Generate(id, 10)) ids.Add(chunk.Id);

            var info = await fixture.Sessions.Info(id);
            Assert.Equal("ilgpu-cpu", info.Device);
            Assert.True(info.DeviceBytes >= info.CacheBytes && info.CacheBytes > 0, $"device bytes {info.DeviceBytes}, cache bytes {info.CacheBytes}");
            Assert.Equal(ComputeDevice.Parse("ilgpu-cpu"), fixture.SiloService<ComputeWorkers>(info.Silo).Device);

            var engine = new InferenceSession(model);
            var logits = engine.Append(ByteTokenizer.Instance.Encode(prompt).ToArray());
            var expected = new List<int>();
            for (int t = 0; t < 10; t++)
            {
                expected.Add(Sampler.ArgMax(logits));
                logits = engine.Append(expected[^1]);
            }
            Assert.Equal(expected, ids);
            await fixture.Sessions.Session(id).Delete();
        }
    }
}
