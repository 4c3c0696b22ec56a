using System.Globalization;
using System.Text;

namespace TauCluster.Http.Tests;

/// <summary>One sample of a Prometheus text exposition: metric name, labels and value.</summary>
public sealed record PrometheusSample(string Name, IReadOnlyDictionary<string, string> Labels, double Value);

/// <summary>
/// A parser for the Prometheus text format (version 0.0.4) as /metrics serves it: <c># HELP</c>, <c># TYPE</c> and
/// <c># EOF</c> lines, then <c>name{label="value",…} value [timestamp]</c>, label values with \\, \" and \n escapes.
/// </summary>
public sealed class PrometheusText
{
    private PrometheusText(IReadOnlyList<PrometheusSample> samples, IReadOnlyDictionary<string, string> types)
    {
        Samples = samples;
        Types = types;
    }

    public IReadOnlyList<PrometheusSample> Samples { get; }

    /// <summary>Each metric family's type from its <c># TYPE</c> line (counter, gauge, histogram, …).</summary>
    public IReadOnlyDictionary<string, string> Types { get; }

    /// <summary>TauCluster's own samples, for failure messages.</summary>
    public override string ToString() => string.Join("; ", Samples.Where(s => s.Name.StartsWith("tau_", StringComparison.Ordinal) && !s.Name.Contains("_bucket"))
        .Select(s => $"{s.Name}{{{string.Join(",", s.Labels.Select(l => $"{l.Key}=\"{l.Value}\""))}}} {s.Value}"));

    public static PrometheusText Parse(string text)
    {
        var samples = new List<PrometheusSample>();
        var types = new Dictionary<string, string>();
        int number = 0;
        foreach (var raw in text.Split('\n'))
        {
            number++;
            string line = raw.TrimEnd('\r');
            if (line.Trim().Length == 0) continue;
            if (line.StartsWith('#'))
            {
                var parts = line.Split(' ', 4, StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length >= 4 && parts[1] == "TYPE") types[parts[2]] = parts[3].Trim();
                continue;
            }
            samples.Add(ParseSample(line, number));
        }
        return new PrometheusText(samples, types);
    }

    /// <summary>The value of the one sample named <paramref name="name"/> whose labels include <paramref name="labels"/>.</summary>
    public double Value(string name, params (string Key, string Value)[] labels)
    {
        var matches = Samples.Where(s => s.Name == name && labels.All(l => s.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).ToList();
        if (matches.Count != 1)
            throw new Xunit.Sdk.XunitException($"expected one sample {name}{{{string.Join(",", labels.Select(l => $"{l.Key}=\"{l.Value}\""))}}}, found {matches.Count}");
        return matches[0].Value;
    }

    /// <summary>
    /// <see cref="Value"/>, or 0 where the family has no sample at all: a counter that has never been incremented is
    /// not exported yet.
    /// </summary>
    public double CounterValue(string name) => Samples.Any(s => s.Name == name) ? Value(name) : 0;

    private static PrometheusSample ParseSample(string line, int number)
    {
        int i = 0;
        while (i < line.Length && (char.IsAsciiLetterOrDigit(line[i]) || line[i] is '_' or ':')) i++;
        if (i == 0) throw Malformed(line, number, "no metric name");
        string name = line[..i];
        var labels = new Dictionary<string, string>();
        if (i < line.Length && line[i] == '{')
        {
            i++;
            while (true)
            {
                while (i < line.Length && line[i] is ' ' or ',') i++;
                if (i < line.Length && line[i] == '}') { i++; break; }
                int keyStart = i;
                while (i < line.Length && (char.IsAsciiLetterOrDigit(line[i]) || line[i] == '_')) i++;
                string key = line[keyStart..i];
                if (key.Length == 0 || i + 1 >= line.Length || line[i] != '=' || line[i + 1] != '"') throw Malformed(line, number, "bad label");
                i += 2;
                var value = new StringBuilder();
                while (true)
                {
                    if (i >= line.Length) throw Malformed(line, number, "unterminated label value");
                    char c = line[i++];
                    if (c == '"') break;
                    if (c == '\\')
                    {
                        if (i >= line.Length) throw Malformed(line, number, "bad escape");
                        char e = line[i++];
                        value.Append(e switch { 'n' => '\n', '\\' => '\\', '"' => '"', _ => throw Malformed(line, number, $"bad escape \\{e}") });
                    }
                    else value.Append(c);
                }
                if (!labels.TryAdd(key, value.ToString())) throw Malformed(line, number, $"label {key} twice");
            }
        }
        var rest = line[i..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (rest.Length is < 1 or > 2) throw Malformed(line, number, "expected a value and an optional timestamp");
        double sample = rest[0] switch
        {
            "+Inf" => double.PositiveInfinity,
            "-Inf" => double.NegativeInfinity,
            "NaN" => double.NaN,
            var v when double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
            _ => throw Malformed(line, number, $"bad value {rest[0]}"),
        };
        if (rest.Length == 2 && !long.TryParse(rest[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out _))
            throw Malformed(line, number, $"bad timestamp {rest[1]}");
        return new PrometheusSample(name, labels, sample);
    }

    private static FormatException Malformed(string line, int number, string why) => new($"/metrics line {number}: {why}: {line}");
}
