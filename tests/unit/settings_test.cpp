// Settings declared once (core/settings.h): parsing and its errors, the shortest round-trip
// formatting of doubles, checks, aliases, nested and prefixed tables, optional overrides, the
// guard, model-file attributes; and the tables the project declares: every flag of `unidiff
// train` has one owner, the defaults are those of the structs, the model file's attributes
// round-trip.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>

#include "core/error.h"
#include "core/settings.h"
#include "experiments/config.h"
#include "experiments/model_io.h"
#include "experiments/run/method.h"
#include "experiments/run/run_config.h"
#include "models/ema.h"
#include "models/network.h"
#include "test_util.h"

namespace unidiff::settings {
namespace {

struct Inner {
  double lr = 1e-3;
  std::optional<int64_t> warmup;
};

struct Outer {
  int64_t steps = 10;
  uint32_t seed = 0;
  bool flag = false;
  std::string name = "x";
  std::vector<int64_t> mult{1, 2};
  std::vector<double> times;
  Inner inner;
  Inner fake;
};

Table<Inner> inner_table() {
  Table<Inner> t;
  t.add(Decl("lr", "learning rate").guarded().check(positive()).attr("lr_attr"), &Inner::lr);
  t.add(Decl("warmup", "warm-up (empty: the run's)"), &Inner::warmup);
  return t;
}

Table<Outer> outer_table() {
  Table<Outer> t;
  t.add(Decl("steps", "steps").guarded().check(positive()), &Outer::steps);
  t.add(Decl("seed", "seed").alias("old_seed"), &Outer::seed);
  t.add(Decl("flag", "a switch"), &Outer::flag);
  t.add(Decl("name", "a name"), &Outer::name);
  t.add(Decl("mult", "a list"), &Outer::mult);
  t.add(Decl("times", "a list of numbers"), &Outer::times);
  t.include(inner_table(), "", &Outer::inner);
  t.include(inner_table(), "fake_", &Outer::fake);
  return t;
}

TEST(Settings, DoublesFormatShortestAndReadBack) {
  for (double v : {0.001, 1e-5, 0.002, 80.0, -1.1, 0.1, 1.0 / 3.0, 2e-3, 5e-4, 0.999, 1e300, 123456789.0}) {
    const std::string s = format_double(v);
    EXPECT_EQ(std::strtod(s.c_str(), nullptr), v) << s;
  }
  EXPECT_EQ(format_double(0.001), "0.001");  // what config.flags shows for --optim_lr's default
  EXPECT_EQ(format_double(1e-5), "1e-05");
  EXPECT_EQ(format_double(80), "80");
  EXPECT_EQ(format_double(std::numeric_limits<double>::quiet_NaN()), "nan");
}

TEST(Settings, ParsesEveryTypeAndRefusesBadValuesNamingTheFlag) {
  const Table<Outer> t = outer_table();
  const Outer c = t.build({{"steps", "7"},
                           {"old_seed", "4294967295"},
                           {"flag", "true"},
                           {"name", "moons"},
                           {"mult", "1,2,4"},
                           {"times", "80,0.8"},
                           {"lr", "2e-3"},
                           {"fake_lr", "5e-4"},
                           {"fake_warmup", "20"}});
  EXPECT_EQ(c.steps, 7);
  EXPECT_EQ(c.seed, 4294967295u);
  EXPECT_TRUE(c.flag);
  EXPECT_EQ(c.name, "moons");
  EXPECT_EQ(c.mult, (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(c.times, (std::vector<double>{80, 0.8}));
  EXPECT_EQ(c.inner.lr, 2e-3);
  EXPECT_FALSE(c.inner.warmup.has_value());
  EXPECT_EQ(c.fake.lr, 5e-4);
  EXPECT_EQ(c.fake.warmup, 20);
  // Later assignments win; unknown names belong to another table and are skipped.
  EXPECT_EQ(t.build({{"steps", "7"}, {"steps", "9"}, {"nope", "1"}}).steps, 9);
  EXPECT_EQ(testing::input_error_of([&] { t.build({{"steps", "abc"}}); }), "bad value 'abc' for --steps: expected int64 (steps)");
  EXPECT_EQ(testing::input_error_of([&] { t.build({{"steps", "0"}}); }),
            "bad value '0' for --steps: must be positive (int64: steps)");
  EXPECT_EQ(testing::input_error_of([&] { t.build({{"seed", "-1"}}); }),
            "bad value '-1' for --seed: expected int64 in [0, 4294967295] (seed)");
  EXPECT_EQ(testing::input_error_of([&] { t.build({{"fake_lr", "-1"}}); }),
            "bad value '-1' for --fake_lr: must be positive (double: learning rate)");
  EXPECT_NE(testing::input_error_of([&] { t.build({{"flag", "maybe"}}); }).find("expected bool"), std::string::npos);
  EXPECT_NE(testing::input_error_of([&] { t.build({{"mult", "1,,2"}}); }).find("comma-separated"), std::string::npos);
}

TEST(Settings, FormatsTheGuardAndTheResolvedFlags) {
  const Table<Outer> t = outer_table();
  Outer c;
  c.steps = 12;
  c.fake.lr = 0.25;
  const auto guard = t.guarded(c);
  EXPECT_EQ(guard, (std::map<std::string, std::string>{{"steps", "12"}, {"lr", "0.001"}, {"fake_lr", "0.25"}}));
  const std::string text = t.flags_text(c);
  EXPECT_NE(text.find("--steps=12\n"), std::string::npos);
  EXPECT_NE(text.find("--mult=1,2\n"), std::string::npos);
  EXPECT_NE(text.find("--fake_warmup=\n"), std::string::npos);  // unset: the run's value
  // Every formatted value parses back to the same value.
  const Outer back = t.build({{"steps", "12"}, {"fake_lr", t.find("fake_lr")->format(c)}});
  EXPECT_EQ(back.fake.lr, c.fake.lr);
}

TEST(Settings, FlagInfosCarryTypesDefaultsAndNormalisation) {
  const auto infos = flag_infos(outer_table(), "group");
  ASSERT_EQ(infos.size(), 10u);
  EXPECT_EQ(infos[0].name, "steps");
  EXPECT_EQ(infos[0].type, "int64");
  EXPECT_EQ(infos[0].default_text, "10");
  EXPECT_EQ(infos[0].group, "group");
  EXPECT_EQ(infos[1].aliases, std::vector<std::string>{"old_seed"});
  EXPECT_EQ(infos[6].type, "double");
  EXPECT_EQ(infos[6].normalize("2e-3"), "0.002");
  EXPECT_EQ(infos[7].type, "int64 or empty");
  EXPECT_THROW(infos[0].normalize("x"), InputError);
}

TEST(Settings, AttributesRoundTripAsFileValues) {
  const Table<Outer> t = outer_table();
  Outer a;
  a.inner.lr = 0.125;
  Outer b;
  for (const auto& s : t.all()) {
    if (s.decl.attribute.empty()) continue;
    s.assign(b, s.value(a));
  }
  EXPECT_EQ(b.inner.lr, 0.125);
  EXPECT_EQ(b.fake.lr, a.fake.lr);  // the prefixed copy shares the attribute name, not the flag
}

TEST(ProjectSettings, EveryTrainFlagHasOneOwnerAndMethodsAreRegistered) {
  std::set<std::string> run;
  for (const auto& f : flag_infos(experiments::run_settings())) EXPECT_TRUE(run.insert(f.name).second) << f.name;
  ASSERT_FALSE(experiments::methods().empty());
  EXPECT_EQ(experiments::find_method("ddpm").name, "pretrain");  // the earlier name stays accepted
  EXPECT_EQ(experiments::find_method("progressive").family, "distill");
  EXPECT_NE(testing::input_error_of([] { experiments::find_method("nope"); }).find("valid: pretrain (alias ddpm)"),
            std::string::npos);
  for (const experiments::MethodInfo* m : experiments::methods()) {
    std::set<std::string> own;
    for (const auto& f : m->flags()) {
      EXPECT_TRUE(own.insert(f.name).second) << m->name << " declares --" << f.name << " twice";
      EXPECT_FALSE(run.count(f.name)) << m->name << " redeclares the run's --" << f.name;
    }
  }
  // The defaults are the structs' own (what --help and config.flags show).
  const experiments::RunConfig defaults;
  EXPECT_EQ(experiments::run_settings().find("optim_lr")->format(defaults), "0.001");
  EXPECT_EQ(experiments::run_settings().find("data_batch")->format(defaults), "512");
  EXPECT_EQ(experiments::run_settings().find("method")->format(defaults), "pretrain");
}

TEST(ProjectSettings, TheModelFileKeepsEveryAttributeSetting) {
  testing::TempDir dir;
  models::NetworkConfig net;
  net.arch = "mlp";
  net.data_shape = {2};
  net.hidden = 16;
  net.layers = 2;
  net.fourier = 3;
  experiments::DiffusionConfig d;
  d.objective = "ddpm";
  d.prediction = "v";
  d.beta_end = 0.03;
  d.sampler = "ddim";
  d.sampler_steps = 4;
  d.sampler_spacing = "uniform";
  auto module = models::make_network(net);
  const models::Ema ema(*module, 0.9);
  experiments::save_model(dir / "m.h5", net, d, *module, ema, 17);
  const experiments::LoadedModel m = experiments::load_model(dir / "m.h5", true);
  for (const auto& s : models::network_settings().all()) {
    if (!s.decl.attribute.empty()) {
      EXPECT_EQ(s.format(m.network), s.format(net)) << s.decl.attribute;
    }
  }
  for (const auto& s : experiments::diffusion_settings().all()) {
    if (!s.decl.attribute.empty()) {
      EXPECT_EQ(s.format(m.diffusion), s.format(d)) << s.decl.attribute;
    }
  }
  EXPECT_EQ(m.step, 17);
}

}  // namespace
}  // namespace unidiff::settings
