using System.Globalization;
using System.Text.Json.Nodes;

// Draws the plots of BENCHMARKS.md and MODELS.md.
//   decode ms/token against context, one line per attention, from `tau bench decode --json`:
//     dotnet run --project benchmarks/TauCluster.Plots -- bench-decode.json docs/decode-vs-context.png ["TITLE"]
//   (also benchmarks/peer.sh's combined JSON, whose results hold llama.cpp's rows as attention "llama.cpp")
//   training curves (train loss averaged over 50 steps, validation loss) from `tau train` logs:
//     dotnet run --project benchmarks/TauCluster.Plots -- training docs/training-curves.png tau=RUN/train_log.csv causal=RUN/train_log.csv
if (args is ["training", var output, .. var runs] && runs.Length > 0 && runs.All(r => r.Contains('=')))
    return TrainingCurves(output, runs);
if (args.Length is not (2 or 3))
{
    Console.Error.WriteLine("usage: TauCluster.Plots BENCH_DECODE.json OUT.png [TITLE] | TauCluster.Plots training OUT.png LABEL=train_log.csv ...");
    return 2;
}
var results = JsonNode.Parse(File.ReadAllText(args[0]))!["results"]!.AsArray();
var plot = new ScottPlot.Plot();
foreach (var group in results.GroupBy(r => r!["attention"]!.GetValue<string>()))
{
    var points = group.OrderBy(r => r!["context"]!.GetValue<int>()).ToArray();
    var line = plot.Add.Scatter(
        points.Select(r => Math.Log2(r!["context"]!.GetValue<int>())).ToArray(),
        points.Select(r => r!["ms_per_token"]!.GetValue<double>()).ToArray());
    line.LegendText = group.Key;
    line.LineWidth = 2;
    line.MarkerSize = 8;
}
plot.Axes.Bottom.Label.Text = "context (tokens, log₂ scale)";
plot.Axes.Left.Label.Text = "decode ms / token";
plot.Title(args.Length == 3 ? args[2] : "Decode step vs context: 6 layers, n_embd 384, 1 head (2-core AMD EPYC)");
plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
    results.Select(r => r!["context"]!.GetValue<int>()).Distinct().Order().Select(c => (Math.Log2(c), c >= 1024 ? $"{c / 1024}K" : $"{c}")).Select(t => new ScottPlot.Tick(t.Item1, t.Item2)).ToArray());
plot.Axes.SetLimitsY(0, results.Max(r => r!["ms_per_token"]!.GetValue<double>()) * 1.1);
plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(args[1]))!);
plot.SavePng(args[1], 900, 520);
Console.WriteLine($"wrote {args[1]}");
return 0;

static int TrainingCurves(string output, string[] runs)
{
    const int Window = 50;
    var plot = new ScottPlot.Plot();
    foreach (var run in runs)
    {
        var (label, path) = (run[..run.IndexOf('=')], run[(run.IndexOf('=') + 1)..]);
        var rows = File.ReadLines(path).Skip(1).Select(l => l.Split(',')).ToArray();   // step,lr,train_loss,val_loss,…
        var steps = rows.Select(r => double.Parse(r[0], CultureInfo.InvariantCulture)).ToArray();
        var train = rows.Select(r => double.Parse(r[2], CultureInfo.InvariantCulture)).ToArray();
        var smoothed = train.Select((_, i) => train[Math.Max(0, i - Window + 1)..(i + 1)].Average()).ToArray();
        var trainLine = plot.Add.Scatter(steps, smoothed);
        trainLine.LegendText = $"{label}: train (mean of {Window} steps)";
        trainLine.MarkerSize = 0;
        trainLine.LineWidth = 1.5f;
        var validation = rows.Where(r => r[3].Length > 0).ToArray();
        var valLine = plot.Add.Scatter(validation.Select(r => double.Parse(r[0], CultureInfo.InvariantCulture)).ToArray(),
            validation.Select(r => double.Parse(r[3], CultureInfo.InvariantCulture)).ToArray());
        valLine.LegendText = $"{label}: validation";
        valLine.Color = trainLine.Color;
        valLine.LineWidth = 2.5f;
        valLine.MarkerSize = 6;
    }
    plot.Axes.Bottom.Label.Text = "optimizer step";
    plot.Axes.Left.Label.Text = "cross-entropy (nats / byte)";
    plot.Title("KJV byte-level GPTs, same shape and budget: tau vs dot-product attention");
    plot.Axes.SetLimitsY(0.8, 3.0);
    plot.ShowLegend(ScottPlot.Alignment.UpperRight);
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
    plot.SavePng(output, 900, 520);
    Console.WriteLine($"wrote {output}");
    return 0;
}
