using System.Text.Json.Nodes;
using Xunit.Abstractions;
using TauCluster.Engine;

namespace TauCluster.Training.Tests;

/// <summary>Training runs on a tiny model and a small repeated text: learning, checkpoints, resume, serving.</summary>
public sealed class TrainingTests : IDisposable
{
    private const string Text = "the quick brown fox jumps over the lazy dog. a stitch in time saves nine. ";

    private readonly string root = Path.Combine(Path.GetTempPath(), "tau-trainer-tests", Guid.NewGuid().ToString("N"));

    private readonly ITestOutputHelper output;

    public TrainingTests(ITestOutputHelper output)
    {
        this.output = output;
        Directory.CreateDirectory(root);
        File.WriteAllText(Corpus, string.Concat(Enumerable.Repeat(Text, 60)));
    }

    public void Dispose()
    {
        try { Directory.Delete(root, true); } catch (IOException) { }
    }

    private string Corpus => Path.Combine(root, "corpus.txt");

    private TrainingOptions Tiny(string name, AttentionKind attention = AttentionKind.Tau, int steps = 40) => new()
    {
        CorpusPath = Corpus,
        OutputDirectory = Path.Combine(root, name),
        Attention = attention,
        Layers = 2, Embedding = 32, Heads = 4, KvHeads = 2, SequenceLength = 32,
        BatchSize = 8, Steps = steps, LearningRate = 1e-2, WarmupSteps = Math.Min(5, steps), WeightDecay = 0.01,
        EvalEvery = 10, EvalSequences = 8, ValidationFraction = 0.1, Seed = 5,
        Taumode = new TaumodeConfig(Temperature: 0.1),
    };

    [Theory]
    [InlineData(AttentionKind.Tau)]
    [InlineData(AttentionKind.Causal)]
    public void Loss_falls_clearly_on_a_repeated_text(AttentionKind attention)
    {
        var trainer = Trainer.Create(Tiny($"smoke-{attention}", attention));
        trainer.Run();
        var losses = trainer.TrainLosses;
        Assert.Equal(40, losses.Count);
        Assert.InRange(losses[0], Math.Log(256) - 0.01, Math.Log(256) + 0.01);   // zero-initialised head: uniform over 256 bytes
        double last = losses.TakeLast(5).Average();
        output.WriteLine($"{attention}: loss {losses[0]:F3} → {last:F3}, validation {trainer.ValidationLosses[^1].Loss:F3}");
        Assert.True(last < 0.5 * losses[0], $"loss went from {losses[0]:F3} to {last:F3}");
        Assert.True(trainer.ValidationLosses[^1].Loss < 0.5 * losses[0], $"validation loss {trainer.ValidationLosses[^1].Loss:F3}");
        Assert.Equal([10, 20, 30, 40], trainer.ValidationLosses.Select(v => v.Step));
    }

    [Fact]
    public void Killed_and_cancelled_runs_resume_to_the_same_weights_as_an_uninterrupted_run()
    {
        var options = Tiny("whole", steps: 12) with { EvalEvery = 4 };
        var whole = Trainer.Create(options);
        whole.Run();

        // A run "killed" after step 6 (nothing saved since the checkpoint at step 4) …
        var interrupted = options with { OutputDirectory = Path.Combine(root, "interrupted") };
        var first = Trainer.Create(interrupted);
        Assert.Throws<InvalidOperationException>(() => first.Run(progress: p =>
        {
            if (p.Step == 6) throw new InvalidOperationException("killed");
        }));
        // … resumes from step 4; then a cancellation at step 9 saves a checkpoint there; the last resume finishes.
        var second = Trainer.Resume(interrupted.OutputDirectory);
        Assert.Equal(4, second.Step);
        using var cancel = new CancellationTokenSource();
        Assert.Throws<OperationCanceledException>(() => second.Run(cancel.Token, p =>
        {
            if (p.Step == 9) cancel.Cancel();
        }));
        var third = Trainer.Resume(interrupted.OutputDirectory);
        Assert.Equal(9, third.Step);
        third.Run();

        Assert.Equal(whole.Parameters.ToArray(), third.Parameters.ToArray());
        Assert.Equal(whole.TrainLosses, third.TrainLosses);
        Assert.Equal(whole.ValidationLosses, third.ValidationLosses);
        Assert.Equal(File.ReadAllBytes(Path.Combine(options.OutputDirectory, TauModel.WeightsFile)),
            File.ReadAllBytes(Path.Combine(interrupted.OutputDirectory, TauModel.WeightsFile)));
        Assert.Single(Directory.GetFiles(interrupted.OutputDirectory, "training_state-*.safetensors"));

        // The log holds each step once, in order, with the losses of the uninterrupted run.
        var rows = File.ReadAllLines(Path.Combine(interrupted.OutputDirectory, Trainer.LogFile));
        Assert.Equal(TrainingLog.Header, rows[0]);
        Assert.Equal(Enumerable.Range(1, 12), rows.Skip(1).Select(r => int.Parse(r.Split(',')[0])));
        var wholeRows = File.ReadAllLines(Path.Combine(options.OutputDirectory, Trainer.LogFile));
        Assert.Equal(wholeRows.Skip(1).Select(r => r.Split(',')[2]), rows.Skip(1).Select(r => r.Split(',')[2]));
    }

    [Fact]
    public void Checkpoint_is_a_model_the_engine_loads_and_generates_from()
    {
        var trainer = Trainer.Create(Tiny("served", steps: 30));
        trainer.Run();
        var model = TauModel.Load(trainer.Directory);
        Assert.Equal("bytes", model.Config.Tokenizer);
        Assert.Equal(256, model.Config.VocabSize);
        Assert.Equal(AttentionKind.Tau, model.Config.Attention);

        // The served model computes what training computed.
        var tokens = ByteTokenizer.Instance.Encode(Text[..32]).ToArray();
        var gpt = new Gpt<float>(model.Config, model.DefaultDomain, 1, 32);
        gpt.LoadWeights(model.Weights);
        gpt.Forward(tokens, tokens);
        var served = new InferenceSession(model).AppendAllLogits(tokens);
        for (int i = 0; i < served.Length; i++) Assert.True(Math.Abs(served[i] - gpt.Logits[i]) <= 1e-4f, $"logit {i}");

    }

    /// <summary>
    /// A model trained until it has learnt the repeated text serves it back: greedy decoding on the engine, from its
    /// checkpoint, continues each prompt with the text that follows it in the corpus.
    /// </summary>
    [Theory]
    [InlineData(AttentionKind.Tau)]
    [InlineData(AttentionKind.Causal)]
    public void Greedy_generation_from_a_checkpoint_continues_the_training_text(AttentionKind attention)
    {
        var trainer = Trainer.Create(Tiny($"greedy-{attention}", attention, steps: GreedySteps));
        trainer.Run();
        var model = TauModel.Load(trainer.Directory);
        foreach (var (prompt, continuation) in new[] { ("the quick brown ", "fox jumps"), ("a stitch in ", "time saves") })
        {
            var session = new InferenceSession(model);
            var logits = session.Append(ByteTokenizer.Instance.Encode(prompt).ToArray());
            var generated = new List<int>();
            while (generated.Count < continuation.Length)
            {
                generated.Add(Sampler.ArgMax(logits));
                logits = session.Append(generated[^1]);
            }
            Assert.Equal(continuation, model.Tokenizer!.Decode(generated));
        }
    }

    private const int GreedySteps = 150;

    [Fact]
    public void Training_log_has_a_row_per_step_with_validation_at_each_evaluation()
    {
        var trainer = Trainer.Create(Tiny("log", steps: 20));
        trainer.Run();
        var rows = File.ReadAllLines(Path.Combine(trainer.Directory, Trainer.LogFile));
        Assert.Equal("step,lr,train_loss,val_loss,grad_norm,tokens_per_second,elapsed_seconds", rows[0]);
        Assert.Equal(21, rows.Length);
        var withValidation = rows.Skip(1).Where(r => r.Split(',')[3].Length > 0).Select(r => int.Parse(r.Split(',')[0]));
        Assert.Equal([10, 20], withValidation);
        Assert.All(rows.Skip(1), r => Assert.True(double.Parse(r.Split(',')[5], System.Globalization.CultureInfo.InvariantCulture) > 0));
        var state = JsonNode.Parse(File.ReadAllText(Path.Combine(trainer.Directory, Trainer.StateFile)))!;
        Assert.Equal(20, (int)state["step"]!);
        Assert.Equal(20, state["train_loss"]!.AsArray().Count);
    }

    [Fact]
    public async Task A_manifold_laplacian_travels_into_the_checkpoint_and_back()
    {
        var manifold = Path.Combine(root, "manifold-source");
        var laplacian = OperationGradientTests.RandomGraphLaplacian(8, 70);
        await Manifold.WriteAsync(manifold, laplacian, TaumodeKind.Median);
        var options = Tiny("manifold", steps: 4) with { Embedding = 16, Heads = 2, KvHeads = 1, ManifoldDirectory = manifold, EvalEvery = 2, Taumode = null };
        var trainer = Trainer.Create(options);
        trainer.Run();

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(trainer.Directory, TauModel.ConfigFile)))!;
        Assert.Equal("manifold", (string?)config["laplacian"]!["manifold"]);
        var model = TauModel.Load(trainer.Directory);
        Assert.Equal(TaumodeKind.Median, model.DefaultDomain!.Settings.Mode);   // the manifold's own mode, as the Engine resolves it
        Assert.Equal(laplacian.Entries(), model.DefaultDomain.Laplacian.Entries());

        var resumed = Trainer.Resume(trainer.Directory);
        Assert.Equal(4, resumed.Step);
        var tokens = ByteTokenizer.Instance.Encode(Text[..32]).ToArray();
        var gpt = new Gpt<float>(model.Config, model.DefaultDomain, 1, 32);
        gpt.LoadWeights(model.Weights);
        gpt.Forward(tokens, tokens);
        var served = new InferenceSession(model).AppendAllLogits(tokens);
        for (int i = 0; i < served.Length; i++) Assert.True(Math.Abs(served[i] - gpt.Logits[i]) <= 1e-4f);
    }

    public static TheoryData<string, string> BadOptions() => new()
    {
        { "heads", "--embd 30 must be a multiple of --heads (4)" },
        { "kv-heads", "--kv-heads 3 must divide --heads (4)" },
        { "val-fraction", "--val-fraction 1.5 must lie strictly between 0 and 1" },
        { "warmup", "--warmup 50 must lie in [0, --steps = 40]" },
        { "manifold-causal", "--manifold" },
        { "corpus", "file not found" },
        { "short-corpus", "too few for a training and a validation window" },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void Bad_options_are_refused_with_a_message_naming_the_option(string what, string message)
    {
        var good = Tiny("bad");
        var options = what switch
        {
            "heads" => good with { Embedding = 30 },
            "kv-heads" => good with { KvHeads = 3 },
            "val-fraction" => good with { ValidationFraction = 1.5 },
            "warmup" => good with { WarmupSteps = 50 },
            "manifold-causal" => good with { Attention = AttentionKind.Causal, ManifoldDirectory = root },
            "corpus" => good with { CorpusPath = Path.Combine(root, "missing.txt") },
            _ => good with { SequenceLength = 4000 },
        };
        var e = Assert.Throws<InvalidTrainingOptionsException>(() => Trainer.Create(options));
        Assert.Contains(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Output_directory_must_be_new_or_a_run_to_resume_on_the_same_corpus()
    {
        var options = Tiny("once", steps: 2);
        Trainer.Create(options).Run();
        Assert.Contains("already holds a training run", Assert.Throws<InvalidTrainingOptionsException>(() => Trainer.Create(options)).Message);
        Assert.Contains("holds no training run", Assert.Throws<InvalidTrainingOptionsException>(() => Trainer.Resume(Path.Combine(root, "nothing"))).Message);
        Directory.CreateDirectory(Path.Combine(root, "occupied"));
        File.WriteAllText(Path.Combine(root, "occupied", "notes.txt"), "mine");
        Assert.Contains("exists and is not empty",
            Assert.Throws<InvalidTrainingOptionsException>(() => Trainer.Create(options with { OutputDirectory = Path.Combine(root, "occupied") })).Message);
        File.WriteAllText(Path.Combine(root, "other.txt"), Text + Text + Text + Text + Text + Text + Text + Text + Text);
        Assert.Contains("is not the corpus this run trained on",
            Assert.Throws<InvalidTrainingOptionsException>(() => Trainer.Resume(options.OutputDirectory, Path.Combine(root, "other.txt"))).Message);
    }

    [Fact]
    public void Learning_rate_warms_up_linearly_then_decays_by_cosine_to_its_floor()
    {
        double At(int step) => LearningRateSchedule.At(step, 100, 10, 1e-3, 0.1);
        Assert.Equal(1e-4, At(0), 12);
        Assert.Equal(5e-4, At(4), 12);
        Assert.Equal(1e-3, At(10), 12);
        Assert.Equal(1e-4, At(99), 12);
        Assert.Equal(0.55e-3, LearningRateSchedule.At(50, 91, 10, 1e-3, 0.1), 12);   // the middle of the decay
        for (int s = 10; s < 99; s++) Assert.True(At(s + 1) <= At(s));
    }

    [Fact]
    public void AdamW_update_follows_the_formula_with_decoupled_decay_and_no_decay_on_embeddings()
    {
        var layout = new ParameterLayout(new ModelConfig(VocabSize: 3, NLayer: 1, NHead: 1, NKvHead: 1, NEmbd: 2, SequenceLen: 4));
        var adam = new AdamW(layout, 0.9, 0.95, 1e-8, 0.1);
        var p = Enumerable.Range(0, layout.Count).Select(i => 0.5f + i * 0.01f).ToArray();
        var g = Enumerable.Range(0, layout.Count).Select(i => (i % 3 - 1) * 0.2f).ToArray();
        var before = (float[])p.Clone();
        var parallel = new ParallelOptions();
        adam.Update(p, g, 0.01, parallel);
        adam.Update(p, g, 0.01, parallel);
        for (int i = 0; i < p.Length; i++)
        {
            bool decay = i >= layout.Embedding.Offset + layout.Embedding.Length;
            double w = before[i], m = 0, v = 0;
            for (int t = 1; t <= 2; t++)
            {
                m = 0.9 * m + 0.1 * g[i];
                v = 0.95 * v + 0.05 * g[i] * g[i];
                double mHat = m / (1 - Math.Pow(0.9, t)), vHat = v / (1 - Math.Pow(0.95, t));
                w = w * (decay ? 1 - 0.01 * 0.1 : 1) - 0.01 * mHat / (Math.Sqrt(vHat) + 1e-8);
            }
            Assert.True(Math.Abs(w - p[i]) <= 1e-6, $"parameter {i}: {p[i]} vs {w}");
        }
    }
}
