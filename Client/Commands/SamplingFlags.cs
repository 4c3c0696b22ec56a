using System.CommandLine;
using System.Globalization;
using TauCluster.Grains;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary>How tokens are chosen: the API's sampling fields as options (one instance per command: a command owns its options).</summary>
internal sealed class SamplingFlags
{
    private readonly Option<double> temperature = Number("--temperature", "T", "softmax temperature; 0 is greedy", 0.8);
    private readonly Option<int> topK = Number("--top-k", "K", "sample among the K likeliest tokens (0 = off)", 0);
    private readonly Option<double> topP = Number("--top-p", "P", "sample within probability mass P (1 = off)", 1.0);
    private readonly Option<double> minP = Number("--min-p", "P", "drop tokens below P × the likeliest's probability (0 = off)", 0.0);
    private readonly Option<ulong> seed = Number("--seed", "S", "the same seed and request give the same tokens", 0UL);
    private readonly Option<double> presencePenalty = Number("--presence-penalty", "X", "OpenAI's presence penalty, over the completion's tokens", 0.0);
    private readonly Option<double> frequencyPenalty = Number("--frequency-penalty", "X", "OpenAI's frequency penalty, over the completion's tokens", 0.0);
    private readonly Option<double?> repetitionPenalty = OptionalNumber<double>("--repetition-penalty", "X",
        WithDefault("vLLM's and llama.cpp's repetition penalty, over the session", "off"));
    private readonly Option<string> logitBias = Text("--logit-bias", "ID:BIAS,…",
        WithDefault("OpenAI's logit_bias: BIAS (−100…100) added to token ID's logit", "none"));

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { temperature, topK, topP, minP, seed, presencePenalty, frequencyPenalty, repetitionPenalty, logitBias })
            command.Options.Add(option);
    }

    /// <summary><c>--logit-bias 65:100,66:-5</c>: token ids with their biases.</summary>
    private static LogitBias? Bias(string? text) => text is null ? null : new LogitBias(List(text, item =>
        item.Split(':') is [var id, var bias]
            ? new KeyValuePair<int, float>(int.Parse(id, CultureInfo.InvariantCulture), float.Parse(bias, NumberStyles.Float, CultureInfo.InvariantCulture))
            : throw new FormatException(), "--logit-bias", "a comma-separated list of ID:BIAS pairs"));

    /// <summary>The settings, validated: invalid options fail here, before any cluster starts.</summary>
    public SamplingSettings Settings(ParseResult result)
    {
        var sampling = new SamplingSettings(result.GetValue(temperature), result.GetValue(topK), result.GetValue(topP), result.GetValue(seed),
            result.GetValue(presencePenalty), result.GetValue(frequencyPenalty), result.GetValue(repetitionPenalty), result.GetValue(minP),
            Bias(result.GetValue(logitBias)));
        sampling.Validate();
        return sampling;
    }
}
