using System.Globalization;
using System.Text;
using TauCluster.Training;

namespace TauCluster.Client;

/// <summary><c>tau train</c>: a byte-level Tauformer (or dot-product) GPT trained on a text file, on this machine's cores.</summary>
internal static class TrainCommand
{
    public const string Usage = """
        tau train --corpus FILE --out DIR [--attention tau|causal] [--layers N] [--embd C] [--heads H] [--kv-heads K]
                  [--seq-len N] [--batch N] [--steps N] [--lr X] [--manifold DIR | --laplacian chain] [more: tau train --help]
        tau train --resume --out DIR
        """;

    public static int Run(IReadOnlyList<string> args, CancellationToken cancellation)
    {
        if (args is ["--help"] or ["-h"]) return Help();
        var a = new ParsedArguments(args, TrainOptionTable.ValueOptions, TrainOptionTable.Flags);
        string output = a.Required("--out");
        int threads = a.Int("--threads") ?? 0;
        if (threads < 0) throw new UsageException($"--threads {threads} must be positive");
        Trainer trainer;
        try
        {
            if (a.Has("--resume"))
            {
                var extra = TrainOptionTable.UnchangeableGiven(a);
                if (extra.Length > 0)
                    throw new UsageException($"--resume continues the run in {output} with its own settings; {string.Join(", ", extra)} cannot be changed");
                trainer = Trainer.Resume(output, a.String("--corpus"), threads);
                Console.WriteLine($"resuming {output} at step {trainer.Step} of {trainer.Options.Steps}");
            }
            else
            {
                trainer = Trainer.Create(TrainOptionTable.TrainingOptionsFrom(a), threads);
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
        try
        {
            trainer.Run(cancellation, p =>
            {
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

    /// <summary><c>tau train --help</c>: the two forms of the command, then every option of the table, a line each, by section.</summary>
    public static int Help()
    {
        var help = new StringBuilder("""
            tau train — train a byte-level Tauformer (or dot-product) GPT on a text file, on this machine's cores

              tau train --corpus FILE --out DIR [options]     start a run (DIR must not hold one)
              tau train --resume --out DIR [--corpus FILE]     continue DIR's run from its last checkpoint

            """);
        help.Append('\n');
        var options = TrainOptionTable.All;
        static string Form(TrainOption o) => o.Value.Length > 0 ? $"{o.Name} {o.Value}" : o.Name;
        int formWidth = options.Max(o => Form(o).Length) + 2, helpWidth = options.Where(o => o.Default is not null).Max(o => o.Help.Length) + 2;
        foreach (var (heading, section) in TrainOptionTable.Sections)
        {
            help.Append(heading).Append('\n');
            foreach (var option in section)
            {
                var line = $"  {Form(option).PadRight(formWidth)}{option.Help}";
                help.Append(TrainOptionTable.DefaultText(option) is { } d ? $"{line.PadRight(2 + formWidth + helpWidth)}[{d}]" : line).Append('\n');
            }
        }
        help.Append('\n').Append("""
            At every checkpoint DIR is a model that `tau generate --model DIR` serves (config.json, model.safetensors),
            plus training.json and training_state-STEP.safetensors (optimizer state, to resume) and train_log.csv
            (step, lr, train_loss, val_loss, grad_norm, tokens_per_second, elapsed_seconds). Ctrl+C saves a checkpoint
            and stops; a run killed any other way resumes from its last checkpoint with the same result.
            """);
        Console.WriteLine(help.ToString());
        return 0;
    }
}
