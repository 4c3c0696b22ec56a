using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using TauCluster.Engine;
using TauCluster.Grains;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary>
/// <c>tau eval</c>: a model's loss over a whole text file, in windows of its context that advance by a stride
/// (<see cref="Evaluation"/>): nats per token, bits per byte and perplexity.
/// </summary>
internal static class EvalCommand
{
    private static readonly Option<string> Model = ModelOption(ModelStore.DefaultName);
    private static readonly Option<string> Corpus = Text("--corpus", "FILE", "the text to score, UTF-8", required: true);
    private static readonly Option<int?> Stride = OptionalNumber<int>("--stride", "N",
        WithDefault("tokens each window moves on; every token is scored once, with at least context − N before it", "context / 2"));
    private static readonly Option<bool> Json = JsonOption();

    public static Command Command()
    {
        var command = new Command("eval", "a model's loss, bits per byte and perplexity over a whole text file") { Model, Corpus, Stride, Json };
        command.SetAction((r, cancellation) => Task.FromResult(Run(r, cancellation)));
        return command;
    }

    private static int Run(ParseResult r, CancellationToken cancellation)
    {
        string corpus = r.GetValue(Corpus)!;
        if (!File.Exists(corpus)) throw new IOException($"--corpus {corpus}: file not found");
        string text = File.ReadAllText(corpus);
        var model = LocalModel(EmbeddedOptions(), r.GetValue(Model)!, out string name);
        var clock = Stopwatch.StartNew();
        var lastReport = TimeSpan.Zero;
        var result = Evaluation.Run(model, text, r.GetValue(Stride), (done, total) =>
        {
            if (!Watched || clock.Elapsed - lastReport < TimeSpan.FromSeconds(1) && done < total) return;
            lastReport = clock.Elapsed;
            var left = TimeSpan.FromSeconds(clock.Elapsed.TotalSeconds * (total - done) / Math.Max(done, 1));
            Progress(string.Create(CultureInfo.InvariantCulture, $"scored {done:N0}/{total:N0} tokens ({100.0 * done / total:F1}%)  ETA {Clock(left)}"));
        }, cancellation);
        if (r.GetValue(Json))
        {
            Console.WriteLine(new JsonObject
            {
                ["tokens"] = result.Tokens,
                ["loss_nats_per_token"] = result.LossNatsPerToken,
                ["bits_per_byte"] = result.BitsPerByte,
                ["perplexity"] = result.Perplexity,
            }.ToJsonString());
        }
        else
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name} on {Path.GetFileName(corpus)}: {result.Tokens:N0} tokens, loss {result.LossNatsPerToken:F4} nats/token, {result.BitsPerByte:F4} bits/byte, perplexity {result.Perplexity:F3}"));
        }
        return 0;
    }
}
