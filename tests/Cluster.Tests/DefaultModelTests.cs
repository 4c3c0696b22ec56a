using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using TauCluster.Engine;
using TauCluster.Grains;

namespace TauCluster.Cluster.Tests;

/// <summary>The model served when none is named is the trained KJV Tauformer that ships with the build (MODELS.md).</summary>
public sealed class DefaultModelTests
{
    /// <summary>Verses from the held-out end of the corpus (Revelation): the model never trained on them.</summary>
    private static readonly string[] HeldOut =
    [
        "And I saw a new heaven and a new earth: for the first heaven and the first earth were passed away; and there was no more sea.",
        "And God shall wipe away all tears from their eyes; and there shall be no more death, neither sorrow, nor crying, neither shall there be any more pain: for the former things are passed away.",
        "And he said unto me, It is done. I am Alpha and Omega, the beginning and the end.",
    ];

    private static TauModel Default() =>
        new ModelStore(Options.Create(new TauClusterOptions { DataDirectory = Path.GetTempPath() }), NullLogger<ModelStore>.Instance).Get(ModelStore.DefaultName);

    [Fact]
    public void The_default_model_is_a_byte_level_tauformer_on_its_own_manifold_under_40_MB()
    {
        var model = Default();
        Assert.Equal(AttentionKind.Tau, model.Config.Attention);
        Assert.Equal("bytes", model.Config.Tokenizer);
        Assert.Equal(256, model.Config.VocabSize);
        Assert.True(model.Config.SequenceLen >= 1024, $"a context of {model.Config.SequenceLen} bytes");
        // The ablation's winner (MODELS.md): ALiBi's recency bias, λ of the unrotated head vectors; served on the λ index.
        Assert.Equal(TauRecency.Alibi, model.Config.TaumodeOrDefault.Recency);
        Assert.True(model.Config.TaumodeOrDefault.LambdaBeforeRope);
        Assert.IsType<IndexedTauCache>(new InferenceSession(model).Cache);
        Assert.True(File.Exists(Path.Combine(DefaultModel.Directory, "manifold", "manifold.parquet")), "the tau model carries the manifold it was trained on");
        long bytes = new DirectoryInfo(DefaultModel.Directory).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);
        Assert.True(bytes < 40L << 20, $"the shipped model takes {bytes} bytes");
    }

    [Fact]
    public void Its_dot_product_twin_ships_beside_it_with_the_same_size_and_context()
    {
        var store = new ModelStore(Options.Create(new TauClusterOptions { DataDirectory = Path.GetTempPath() }), NullLogger<ModelStore>.Instance);
        Assert.Contains(DefaultModel.CausalName, store.Names());
        var (tau, causal) = (store.Get(ModelStore.DefaultName).Config, store.Get(DefaultModel.CausalName).Config);
        Assert.Equal(AttentionKind.Causal, causal.Attention);
        Assert.Equal((tau.NLayer, tau.NEmbd, tau.NHead, tau.NKvHead, tau.SequenceLen), (causal.NLayer, causal.NEmbd, causal.NHead, causal.NKvHead, causal.SequenceLen));
        long bytes = new DirectoryInfo(DefaultModel.CausalDirectory).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);
        Assert.True(bytes < 40L << 20, $"the shipped twin takes {bytes} bytes");
    }

    [Fact]
    public void The_default_model_predicts_held_out_scripture_far_better_than_chance()
    {
        var model = Default();
        foreach (var verse in HeldOut)
        {
            var ids = model.Tokenizer!.Encode(verse).ToArray();
            var logits = new InferenceSession(model).AppendAllLogits(ids);
            double loss = 0;
            for (int t = 0; t + 1 < ids.Length; t++)
            {
                var row = logits.AsSpan(t * 256, 256);
                float max = System.Numerics.Tensors.TensorPrimitives.Max(row);
                double logSum = 0;
                foreach (float l in row) logSum += Math.Exp(l - max);
                loss += Math.Log(logSum) + max - row[ids[t + 1]];
            }
            loss /= ids.Length - 1;
            // chance is ln 256 = 5.55 nats per byte; the trained model's validation loss is in MODELS.md
            Assert.True(loss < 2.0, $"{loss:F3} nats/byte on: {verse}");
        }
    }

    [Fact]
    public async Task A_silo_with_no_settings_serves_the_default_model_and_writes_english_letters()
    {
        // The model loads its manifold inside a grain: a load that waited on the grain's own scheduler hung here.
        var fixture = new ClusterFixture();
        await fixture.InitializeAsync();
        try
        {
            var id = $"d-{Guid.NewGuid():N}";
            await fixture.Sessions.Open(id, new SessionSpec(ModelStore.DefaultName, null, new SamplingSettings(0.8, 40, 1, 1)));
            await fixture.Sessions.Append(id, PromptInput.FromText("And God said unto Moses"));
            var text = new System.Text.StringBuilder();
            await foreach (var token in fixture.Sessions.Generate(id, 120)) text.Append(token.Text);
            string written = text.ToString();
            Assert.Equal(120, System.Text.Encoding.UTF8.GetByteCount(written));
            double letters = written.Count(c => char.IsAsciiLetter(c) || c is ' ' or ',' or '.' or ';' or ':' or '\n') / (double)written.Length;
            Assert.True(letters > 0.95, $"{letters:P0} letters, spaces and punctuation in: {written}");
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }
}
