-- The part of a lamassu-server database this extension reads: `cash_out_txs`
-- as Lamassu's migrations leave it (008/011 create it; later migrations rename
-- session_id -> id, device_fingerprint -> device_id, currency_code -> fiat_code,
-- dispensed -> dispense, confirmation_time -> confirmed_at, make crypto_atoms
-- numeric(30), and add dispense_confirmed, commission_percentage,
-- raw_ticker_price, discount, fixed_fee, error_code, published_at, ...).
-- Written for the tests from those migrations' column definitions.
CREATE TYPE status_stage AS ENUM (
  'notSeen', 'published', 'authorized', 'instant', 'confirmed', 'rejected',
  'insufficientFunds'
);

CREATE TABLE cash_out_txs (
  id uuid PRIMARY KEY,
  device_id text NOT NULL,
  to_address text NOT NULL,
  crypto_atoms numeric(30) NOT NULL,
  crypto_code text NOT NULL,
  fiat numeric(14, 5) NOT NULL,
  fiat_code text NOT NULL,
  tx_hash text,
  status status_stage NOT NULL DEFAULT 'notSeen',
  dispense boolean NOT NULL DEFAULT false,
  notified boolean NOT NULL DEFAULT false,
  redeem boolean NOT NULL DEFAULT false,
  phone text,
  error text,
  created timestamptz NOT NULL DEFAULT now(),
  confirmed_at timestamptz,
  hd_index integer,
  swept boolean NOT NULL DEFAULT false,
  dispense_confirmed boolean DEFAULT false,
  provisioned_1 integer,
  provisioned_2 integer,
  denomination_1 integer,
  denomination_2 integer,
  error_code text,
  published_at timestamptz,
  tx_version integer NOT NULL DEFAULT 1,
  terms_accepted boolean NOT NULL DEFAULT false,
  layer_2_address text,
  commission_percentage numeric(14, 5),
  raw_ticker_price numeric(14, 5),
  discount smallint,
  fixed_fee numeric(14, 5) NOT NULL DEFAULT 0
);

-- The machines' dispensers (018 creates `devices` with cassette1/2; later
-- migrations add cassette3/4, number_of_cassettes, and the recyclers renamed
-- from stackers) and the config that holds their denominations
-- (`cashOut_<device_id>_cassetteN`) and fiat currency (`locale_fiatCurrency`,
-- `locale_overrides`), in the newest valid `user_config` row of type 'config'.
CREATE TABLE devices (
  device_id text PRIMARY KEY,
  name text NOT NULL,
  cashbox integer NOT NULL DEFAULT 0,
  cassette1 integer NOT NULL DEFAULT 0,
  cassette2 integer NOT NULL DEFAULT 0,
  cassette3 integer NOT NULL DEFAULT 0,
  cassette4 integer NOT NULL DEFAULT 0,
  number_of_cassettes integer NOT NULL DEFAULT 2,
  recycler1 integer NOT NULL DEFAULT 0,
  recycler2 integer NOT NULL DEFAULT 0,
  recycler3 integer NOT NULL DEFAULT 0,
  recycler4 integer NOT NULL DEFAULT 0,
  recycler5 integer NOT NULL DEFAULT 0,
  recycler6 integer NOT NULL DEFAULT 0,
  number_of_recyclers integer NOT NULL DEFAULT 0,
  paired boolean NOT NULL DEFAULT TRUE,
  display boolean NOT NULL DEFAULT TRUE,
  created timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_config (
  id serial PRIMARY KEY,
  type text NOT NULL,
  data json NOT NULL,
  created timestamptz NOT NULL DEFAULT now(),
  valid boolean NOT NULL,
  schema_version smallint NOT NULL DEFAULT 1
);
