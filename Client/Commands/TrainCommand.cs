using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using TauCluster.Training;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary><c>tau train</c>: a byte-level Tauformer (or dot-product) GPT trained on a text file, on this machine's cores.</summary>
internal static class TrainCommand
{
    /// <summary>What <c>tau train --help</c> says after the options: the command's two forms and what a run writes.</summary>
    public const string Notes = """
        Forms:
          tau train --corpus FILE --out DIR [options]     start a run (DIR must not hold one)
          tau train --resume --out DIR [--corpus FILE]    continue DIR's run from its last checkpoint

        The model has a vocabulary of 256, one token per byte ("tokenizer": "bytes"); the optimizer is AdamW, with
        warm-up then cosine decay and global gradient-norm clipping. At every checkpoint DIR is a model that
        `tau generate --model DIR` serves (config.json, model.safetensors), plus training.json and
        training_state-STEP.safetensors (optimizer state, to resume) and train_log.csv (step, lr, train_loss, val_loss,
        grad_norm, tokens_per_second, elapsed_seconds). Ctrl+C saves a checkpoint and stops; a run killed any other way
        resumes from its last checkpoint with the same result.
        """;

    public static Command Command()
    {
        var command = new Command("train", "train a byte-level Tauformer (or dot-product) GPT on a text file, on this machine's cores");
        foreach (var option in TrainOptionTable.All) command.Options.Add(option.Option);
        command.SetAction((r, cancellation) => Task.FromResult(Run(r, cancellation)));
        return command;
    }

    private static int Run(ParseResult r, CancellationToken cancellation)
    {
        string output = r.GetValue(TrainOptionTable.Out)!;
        int threads = r.GetValue(TrainOptionTable.Threads) ?? 0;
        if (threads < 0) throw new UsageException($"--threads {threads} must be positive");
        Trainer trainer;
        try
        {
            if (r.GetValue(TrainOptionTable.Resume))
            {
                var extra = TrainOptionTable.UnchangeableGiven(r);
                if (extra.Length > 0)
                    throw new UsageException($"--resume continues the run in {output} with its own settings; {string.Join(", ", extra)} cannot be changed");
                trainer = Trainer.Resume(output, r.GetValue(TrainOptionTable.Corpus), threads);
                Console.WriteLine($"resuming {output} at step {trainer.Step} of {trainer.Options.Steps}");
            }
            else
            {
                trainer = Trainer.Create(TrainOptionTable.TrainingOptionsFrom(r), threads);
            }
        }
        catch (InvalidTrainingOptionsException e)
        {
            throw new UsageException(e.Message);
        }

        var o = trainer.Options;
        var c = trainer.ModelConfig;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"training {c.Attention.ToString().ToLowerInvariant()} model: {c.NLayer} layers, n_embd {c.NEmbd}, {c.NHead} heads / {c.NKvHead} kv heads, seq {o.SequenceLength}, batch {o.BatchSize}, {o.Steps} steps → {output}"));
        int every = Math.Max(1, Math.Min(10, o.EvalEvery));
        var eta = new Eta(trainer.Step);
        try
        {
            trainer.Run(cancellation, p =>
            {
                eta.Report(p);
                if (p.Step % every != 0 && p.ValidationLoss is null && p.Step != p.Steps) return;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"step {p.Step,6}/{p.Steps}  lr {p.LearningRate:E2}  loss {p.TrainLoss:F4}{(p.ValidationLoss is { } v ? $"  val {v:F4}" : "")}  |g| {p.GradientNorm:F3}  {p.TokensPerSecond,8:F0} tok/s  {TimeSpan.FromSeconds(Math.Round(p.ElapsedSeconds))}{(p.Checkpointed ? "  [checkpoint]" : "")}"));
            });
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            Console.Error.WriteLine($"checkpoint saved at step {trainer.Step}; continue with: tau train --resume --out {output}");
            throw;
        }
        var last = trainer.ValidationLosses.Count > 0 ? trainer.ValidationLosses[^1] : default;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"done: {output} holds the model after {trainer.Step} steps (validation loss {last.Loss:F4} nats/byte = {last.Loss / Math.Log(2):F3} bits/byte); try: tau generate --model {output} --prompt TEXT"));
        return 0;
    }

    /// <summary>
    /// Where the run stands, for a person watching stderr: steps done of all, loss, tokens/s and the time left at this
    /// run's pace (since this process began, so a resumed run is not credited with its earlier steps).
    /// </summary>
    private sealed class Eta(int firstStep)
    {
        private readonly Stopwatch clock = Stopwatch.StartNew();
        private TimeSpan lastReport = -TimeSpan.FromSeconds(1);   // the first step is reported

        public void Report(TrainingProgress p)
        {
            // Twice a second at most: a tiny model steps far faster than anyone reads.
            if (!Watched || (clock.Elapsed - lastReport).TotalSeconds < 0.5 && p.Step != p.Steps) return;
            lastReport = clock.Elapsed;
            double perStep = clock.Elapsed.TotalSeconds / Math.Max(1, p.Step - firstStep);
            var left = TimeSpan.FromSeconds(Math.Round(perStep * (p.Steps - p.Step)));
            Progress(string.Create(CultureInfo.InvariantCulture,
                $"step {p.Step}/{p.Steps} ({100.0 * p.Step / p.Steps:F1}%)  loss {p.TrainLoss:F4}  {p.TokensPerSecond:F0} tok/s  ETA {Clock(left)}"));
        }
    }
}
